/**
 * Runs a command against the consumer stack (consumer-stack.ts), for the Go and Python consumer
 * libraries' tests (`make test-consumers`):
 *
 * ```sh
 * npx tsx test/support/with-consumer-stack.ts --cwd consumers/go -- go test ./...
 * ```
 *
 * Starts the stack, runs the command with the stack's TOKEN_STACK_* variables added to the
 * environment, stops the stack (also when the command fails or this process gets SIGINT/SIGTERM),
 * and exits with the command's exit code: 2 for wrong usage, 1 when the stack did not start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startConsumerStack, type ConsumerStack } from './consumer-stack.js';

const USAGE = 'Usage: with-consumer-stack.ts [--cwd DIR] -- COMMAND [ARG...]';

async function main(): Promise<number> {
  const separator = process.argv.indexOf('--');
  const command = separator < 0 ? [] : process.argv.slice(separator + 1);
  let cwd: string;
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2, separator < 0 ? undefined : separator),
      options: { cwd: { type: 'string' } },
    });
    cwd = resolve(values.cwd ?? '.');
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (command.length === 0) {
    console.error(`No command given.\n${USAGE}`);
    return 2;
  }

  let stack: ConsumerStack | undefined;
  let child: ChildProcess | undefined;
  let signalled: NodeJS.Signals | undefined;
  // Listeners that stay: make and npm pass Ctrl-C on too, and a second one must not end this
  // process before the stack is stopped.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      signalled ??= signal;
      child?.kill(signal);
    });
  }

  const startedAt = Date.now();
  try {
    stack = await startConsumerStack();
    if (signalled !== undefined) return 1;
    console.log(
      `[consumer-stack] up in ${((Date.now() - startedAt) / 1000).toFixed(1)} s: Redis ${stack.env.TOKEN_STACK_REDIS_URL}, resource API ${stack.env.TOKEN_STACK_RESOURCE_URL}, control ${stack.env.TOKEN_STACK_CONTROL_URL}`,
    );
    console.log(`[consumer-stack] running in ${cwd}: ${command.join(' ')}`);
    child = spawn(command[0]!, command.slice(1), { cwd, env: { ...process.env, ...stack.env }, stdio: 'inherit' });
    const [code, signal] = (await Promise.race([
      once(child, 'exit'),
      once(child, 'error').then(([error]) => Promise.reject(error as Error)),
    ])) as [number | null, NodeJS.Signals | null];
    if (code !== 0) {
      console.error(
        `[consumer-stack] ${command.join(' ')} ended with ${code === null ? signal : `exit code ${code}`}; the worker's last lines:\n${stack.workerOutput().split('\n').slice(-40).join('\n')}`,
      );
    }
    return code ?? 1;
  } catch (error) {
    console.error(`[consumer-stack] ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await stack?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
