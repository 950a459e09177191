/** Local HTTP servers for the tests of URL inputs: started on a free port, stopped however their clients left them. */
import type { Server } from 'node:http';

/** Starts `server` on a free port of 127.0.0.1 and gives the port. */
export async function listenLocally(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

/** Stops `server`, cutting the connections still open (a stalled response keeps its own). */
export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}
