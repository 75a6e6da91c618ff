export default function NotFound() {
  return (
    <main className="failure">
      <h1>No such room</h1>
      <p>Room names are 1 to 64 characters of A-Z a-z 0-9 . _ -. Try <a href="/rooms/lobby">/rooms/lobby</a>.</p>
    </main>
  );
}
