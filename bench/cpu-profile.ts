/**
 * Where a worker's CPU goes, from the V8 CPU profiles `node --cpu-prof` writes (one per thread:
 * the main thread, and the SDK's workflow thread): self time by owner (this project, each package,
 * Node.js internals, V8's GC and native code) inside a time window, for bench/worker-scale.ts.
 *
 * The workflow thread runs one webpack bundle, in which the SDK's workflow library and this
 * project's workflow code share a file: each sample is given to the bundled module its line falls
 * in (webpack's `/***\/ "./path"` headers).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The parts of a `.cpuprofile` file read here (V8's `Profiler.Profile`). */
interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  /** Microseconds, on the monotonic clock every thread of the process shares. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One thread's self time in the window, by owner and by function. */
export interface ThreadProfile {
  /** `main` or `worker thread <id>`, from the file name. */
  thread: string;
  /** Milliseconds the thread was sampled on the CPU (idle left out). */
  busyMs: number;
  byOwner: Map<string, number>;
  byFunction: Map<string, number>;
}

/** A window of the run, in ms after the main thread's profile began. */
export interface ProfileWindow {
  fromMs: number;
  toMs: number;
}

/**
 * Reads every profile in `dir` and sums each thread's self time within `window`. Code under
 * `projectRoot` (outside node_modules) is this project's; the bundle's is told apart by module.
 */
export function summarizeProfiles(dir: string, window: ProfileWindow, projectRoot: string, bundlePath: string): ThreadProfile[] {
  const files = readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'));
  const profiles = files.map((name) => ({ name, profile: JSON.parse(readFileSync(join(dir, name), 'utf8')) as CpuProfile }));
  // CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile: thread 0 is the main thread.
  const threadOf = (name: string) => name.split('.')[4] ?? '?';
  const main = profiles.find(({ name }) => threadOf(name) === '0');
  if (main === undefined) throw new Error(`No main-thread CPU profile in ${dir}`);
  const fromUs = main.profile.startTime + window.fromMs * 1000;
  const toUs = main.profile.startTime + window.toMs * 1000;
  const bundleModules = bundleModuleStarts(bundlePath);

  return profiles.map(({ name, profile }) => {
    const thread = threadOf(name) === '0' ? 'main' : `worker thread ${threadOf(name)}`;
    const nodes = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
    const byOwner = new Map<string, number>();
    const byFunction = new Map<string, number>();
    let busyMs = 0;
    let at = profile.startTime;
    profile.samples.forEach((nodeId, i) => {
      at += profile.timeDeltas[i] ?? 0;
      const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
      const frame = nodes.get(nodeId);
      if (at < fromUs || at >= toUs || frame === undefined || frame.functionName === '(idle)') return;
      busyMs += ms;
      const owner = ownerOf(frame, projectRoot, bundlePath, bundleModules);
      byOwner.set(owner, (byOwner.get(owner) ?? 0) + ms);
      const fn = `${frame.functionName || '(anonymous)'} [${owner}]`;
      byFunction.set(fn, (byFunction.get(fn) ?? 0) + ms);
    });
    return { thread, busyMs, byOwner, byFunction };
  });
}

/** Who a profiled function belongs to. */
function ownerOf(
  frame: CpuProfile['nodes'][number]['callFrame'],
  projectRoot: string,
  bundlePath: string,
  bundleModules: BundleModule[],
): string {
  const { functionName } = frame;
  // ES modules are profiled by their file: URL, CommonJS ones by their path.
  const url = frame.url.startsWith('file://') ? fileURLToPath(frame.url) : frame.url;
  if (functionName === '(garbage collector)') return 'V8 garbage collector';
  if (url === '') return 'V8 and native code';
  if (url.startsWith('node:')) return 'Node.js internals';
  if (url.endsWith(bundlePath)) {
    // The last module starting at or before the line (0-based in profiles, 1-based here).
    let module = 'workflow bundle (unknown module)';
    for (const candidate of bundleModules) {
      if (candidate.line > frame.lineNumber + 1) break;
      module = candidate.owner;
    }
    return `${module} (workflow bundle)`;
  }
  if (url.includes('/node_modules/') || url.startsWith(projectRoot)) return packageOf(url);
  // A script compiled without a file name, such as those the SDK runs in the workflow context.
  return `script ${url}`;
}

/** `@scope/name` or `name` of the innermost node_modules a path is in; else this project's. */
function packageOf(path: string): string {
  const at = path.lastIndexOf('/node_modules/');
  if (at === -1) return 'this project';
  const parts = path.slice(at + '/node_modules/'.length).split('/');
  return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

interface BundleModule {
  line: number;
  owner: string;
}

/** Where each module of a webpack bundle starts, and whose it is. */
function bundleModuleStarts(bundlePath: string): BundleModule[] {
  const modules: BundleModule[] = [];
  readFileSync(bundlePath, 'utf8')
    .split('\n')
    .forEach((text, index) => {
      const path = /^\/\*\*\*\/ "([^"]+)"/.exec(text)?.[1];
      if (path !== undefined) modules.push({ line: index + 1, owner: packageOf(path) });
    });
  return modules;
}
