/**
 * Free TCP ports on 127.0.0.1, for the local stack and the tests' own servers, and whether one is
 * taken.
 */
import { once } from 'node:events';
import { connect, createServer } from 'node:net';

/**
 * A port that is free right now on 127.0.0.1. Another process may take it before we bind it; that
 * race is rare enough on a test machine, and the server that loses it fails to start and says so.
 */
export async function findFreePort(): Promise<number> {
  const [port] = await findFreePorts(1);
  return port!;
}

/** `count` distinct ports that are free right now (all held open together, so none repeats). */
export async function findFreePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(async (server) => {
        server.listen(0, '127.0.0.1');
        await once(server, 'listening');
        const address = server.address();
        if (address === null || typeof address === 'string') throw new Error('Could not find a free TCP port');
        return address.port;
      }),
    );
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` right now. */
export function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
