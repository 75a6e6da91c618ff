// Names shared by the server and the browser code.

/** Room names this app accepts: edgeroom's name rules, at most 64 characters so the derived counter name fits. */
const ROOM_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** Whether `name` is a room name this app serves (edgeroom's `A-Z a-z 0-9 . _ -`, not `.` or `..`). */
export function isRoomName(name: string): boolean {
  return ROOM_NAME.test(name) && name !== "." && name !== "..";
}

/** The live reactions counter of a room (an edgeroom counter, granted together with the room). */
export function reactionsCounter(room: string): string {
  return `reactions.${room}`;
}
