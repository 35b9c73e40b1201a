/**
 * A Docker engine of the test's own: Debian's `dockerd` with its socket, data and state in a
 * temporary folder (so parallel runs and a machine's own engine never meet), and no bridge
 * network: `--bridge=none --iptables=false --ip-forward=false`, so containers run with
 * `--network host` only and nothing leaves loopback. Stopped, with its images, by
 * {@link DockerEngine.stop}.
 *
 * Where no engine can start (no `dockerd`, not root, a kernel without what it needs), the reason is
 * returned instead, for the test to skip with.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { exitDescription, hasExited, stopChild } from '../../dev/child-process.js';

const execFileAsync = promisify(execFile);

/** Override with `DOCKERD_BIN` / `DOCKER_BIN`. */
const DOCKERD_BIN = process.env.DOCKERD_BIN ?? 'dockerd';
const DOCKER_BIN = process.env.DOCKER_BIN ?? 'docker';
const START_TIMEOUT_MS = 90_000;

export interface DockerEngine {
  /** `unix://…/docker.sock`, for `DOCKER_HOST`. */
  readonly host: string;
  /** The environment for `docker` and scripts that call it: this engine, the classic builder. */
  readonly env: NodeJS.ProcessEnv;
  /** Runs `docker <args…>` against this engine; resolves with its trimmed stdout. */
  readonly docker: (args: string[], options?: { timeoutMs?: number }) => Promise<string>;
  /** Stops the engine (SIGTERM, so it stops its containers and unmounts) and removes its folder. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startDockerEngine(): Promise<DockerEngine | { unavailable: string }> {
  if (process.getuid?.() !== 0) return { unavailable: 'dockerd needs root, and this test runs as another user' };
  // Short: containerd's socket lives under the exec root, and a socket path has at most 107 bytes.
  const dir = await mkdtemp('/tmp/tlw-docker-');
  const host = `unix://${join(dir, 'docker.sock')}`;
  const logFile = join(dir, 'dockerd.log');
  // The classic builder: BuildKit would fetch its Dockerfile frontend from a registry for
  // `# syntax=` lines, and no registry is reachable here.
  const env = { ...process.env, DOCKER_HOST: host, DOCKER_BUILDKIT: '0' };
  const docker = async (args: string[], { timeoutMs = 600_000 } = {}) => {
    try {
      const { stdout } = await execFileAsync(DOCKER_BIN, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
      return stdout.trim();
    } catch (err) {
      const { stderr = '', stdout = '' } = err as { stderr?: string; stdout?: string };
      throw new Error(`docker ${args.join(' ')} failed: ${(stderr || stdout || String(err)).trim().slice(-4000)}`, { cause: err });
    }
  };

  const child = spawn(
    'sh',
    [
      '-c',
      `exec "$0" "$@" >>${logFile} 2>&1`,
      DOCKERD_BIN,
      '--host',
      host,
      '--data-root',
      join(dir, 'data'),
      '--exec-root',
      join(dir, 'exec'),
      '--pidfile',
      join(dir, 'docker.pid'),
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-forward=false',
      '--ip-masq=false',
    ],
    { stdio: 'ignore' },
  );
  running.add(child);
  child.once('exit', () => running.delete(child));
  const stop = async () => {
    await stopChild(child, { graceMs: 30_000 });
    // What dockerd leaves mounted under its folder (the default network namespace's bind mount).
    const mounts = (await readFile('/proc/self/mounts', 'utf8').catch(() => ''))
      .split('\n')
      .map((line) => line.split(' ')[1] ?? '')
      .filter((path) => path.startsWith(`${dir}/`))
      .sort()
      .reverse();
    for (const path of mounts) await execFileAsync('umount', ['--lazy', path]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (hasExited(child)) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      await stop();
      return {
        unavailable: `dockerd exited (${exitDescription(child)}): ${log.trim().split('\n').slice(-3).join(' | ') || 'no output (is dockerd installed? apt-get install docker.io)'}`,
      };
    }
    if (
      await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 }).then(
        () => true,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      await stop();
      return { unavailable: `dockerd did not answer within ${START_TIMEOUT_MS} ms: ${log.trim().split('\n').slice(-3).join(' | ')}` };
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { host, env, docker, stop };
}
