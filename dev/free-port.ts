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

/**
 * `count` distinct ports in `[min, max]` that are free right now, for servers that cannot store a
 * port above `max` (Temporal keeps membership ports in a signed 16-bit column: below 32768, where
 * the kernel never hands out a port of its own choosing).
 */
export async function findFreePortsInRange(count: number, min: number, max: number): Promise<number[]> {
  const ports: number[] = [];
  const held: ReturnType<typeof createServer>[] = [];
  try {
    for (let tries = 0; ports.length < count; tries++) {
      if (tries > 50 * count) throw new Error(`Could not find ${count} free TCP ports between ${min} and ${max}`);
      const port = min + Math.floor(Math.random() * (max - min + 1));
      if (ports.includes(port)) continue;
      const server = createServer();
      const bound = await new Promise<boolean>((resolve) => {
        server.once('error', () => resolve(false));
        server.listen(port, '127.0.0.1', () => resolve(true));
      });
      if (!bound) continue;
      held.push(server);
      ports.push(port);
    }
    return ports;
  } finally {
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}
