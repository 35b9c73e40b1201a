/**
 * Helm v4 (dev/helm/ensure.sh, `make helm`) for the chart's tests: `helm` with homes of its own
 * (no repository, cache or plugin of the machine's user), and `helm template` parsed into objects.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

/** The chart in this repository. */
export const CHART_DIR = join(ROOT, 'deploy', 'helm', 'token-lifecycle-worker');

/** One rendered Kubernetes object, as much of it as the tests read. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/** What a helm command printed, and how it ended. */
export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Helm {
  /** Runs helm; never throws for a non-zero exit (the result says it). */
  run(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<HelmResult>;
  /** `helm template` of the chart as release `release` in `namespace`; throws with helm's stderr when it fails. */
  template(release: string, namespace: string, args?: readonly string[]): Promise<KubeObject[]>;
  /** Removes the homes. */
  destroy(): Promise<void>;
}

/** The Helm binary, built once by dev/helm/ensure.sh. */
async function helmBinary(): Promise<string> {
  const { stdout } = await execFileAsync('bash', [join(ROOT, 'dev', 'helm', 'ensure.sh')], { timeout: 1_800_000 });
  return stdout.trim();
}

export async function startHelm(): Promise<Helm> {
  const binary = await helmBinary();
  const home = await mkdtemp(join(tmpdir(), 'token-lifecycle-helm-'));
  const homes = {
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
  };
  const run = async (args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<HelmResult> => {
    try {
      const { stdout, stderr } = await execFileAsync(binary, args, {
        timeout: 120_000,
        maxBuffer: 32 * 1024 * 1024,
        env: { PATH: process.env.PATH, HOME: home, ...homes, ...env },
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failure = error as { code?: unknown; stdout?: string; stderr?: string };
      if (typeof failure.code !== 'number') throw error;
      return { code: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
    }
  };
  return {
    run,
    async template(release, namespace, args = []) {
      const result = await run(['template', release, CHART_DIR, '--namespace', namespace, ...args]);
      if (result.code !== 0) throw new Error(`helm template ${args.join(' ')} failed:\n${result.stderr}`);
      return parseManifests(result.stdout);
    },
    async destroy() {
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** The objects of a multi-document manifest (empty documents left out). */
export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((document) => {
      if (document.errors.length > 0) throw new Error(`unparsable manifest: ${document.errors[0]?.message}`);
      return document.toJS() as KubeObject | null;
    })
    .filter((object): object is KubeObject => object !== null);
}
