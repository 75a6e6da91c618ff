// The room page, rendered on the server from edgeroom's REST readers (over the service binding),
// then live in the browser from exactly the event it was rendered at.
import type { Metadata } from "next";
import { cookies } from "next/headers";
import { notFound } from "next/navigation";
import { edgeroomConfig } from "@/lib/config";
import { loadRoom } from "@/lib/edgeroom";
import { isRoomName } from "@/lib/names";
import { VISITOR_COOKIE, newVisitor, parseVisitor } from "@/lib/visitor";
import { RoomClient } from "./room-client";

export const dynamic = "force-dynamic";

interface Props {
  params: Promise<{ room: string }>;
}

export async function generateMetadata({ params }: Props): Promise<Metadata> {
  const { room } = await params;
  return { title: `#${room} · edgeroom chat` };
}

export default async function RoomPage({ params }: Props) {
  const { room } = await params;
  if (!isRoomName(room)) notFound();
  // The server reads with a 60-second read-only token in the visitor's name (their first visit
  // has no cookie yet: a one-off id then; the token route sets the cookie).
  const user = parseVisitor((await cookies()).get(VISITOR_COOKIE)?.value) ?? newVisitor();
  let failure: string;
  try {
    const config = await edgeroomConfig();
    const snapshot = await loadRoom(config, room, user);
    return <RoomClient snapshot={snapshot} connect={{ url: config.publicUrl, tenant: config.tenant }} />;
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error);
    console.error(`rendering room ${room} failed: ${failure}`);
  }
  return (
    <main className="failure">
      <h1>#{room}</h1>
      <p role="alert" id="failure">
        The room could not be loaded from edgeroom: {failure}
      </p>
    </main>
  );
}
