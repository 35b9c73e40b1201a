/**
 * Cancellation scopes for the work of one cycle that nothing keeps once the cycle is over
 * (docs/design.md, "The loop's memory").
 *
 * The SDK links every scope, timer and activity to the scope it starts in by a reaction on that
 * scope's `cancelRequested` promise. In the root scope, which never settles while the run lasts,
 * each link stays: `wf.condition(fn, timeout)` left a cancellable scope, the `CancelledFailure` that
 * ended it (with its stack) and their closures per cycle, and each activity a closure, until
 * continue-as-new (≈ 2.7 KB per cycle). Here a cycle's work runs in a scope whose parent is an
 * anchor that is non-cancellable and already had a cancellation requested: the SDK's link to a
 * settled promise runs once and is dropped, and a non-cancellable parent passes nothing down
 * (Temporal's shielding of non-cancellable scopes), so the cycle's scope and everything in it are
 * garbage when the cycle ends. A cancellation of the workflow still reaches the cycle in progress,
 * through one link per run.
 */
import * as wf from '@temporalio/workflow';

export class CycleScopes {
  private readonly anchor: wf.CancellationScope;
  private readonly root: wf.CancellationScope;
  private inProgress: wf.CancellationScope | null = null;

  /** Call from the workflow's main function (its root scope). */
  constructor() {
    this.root = wf.CancellationScope.current();
    this.anchor = new wf.CancellationScope({ cancellable: false });
    this.anchor.cancel();
    void this.root.cancelRequested.catch(() => this.inProgress?.cancel());
  }

  /** Runs `fn` in a scope of its own that a cancellation of the workflow reaches. */
  async run<T>(fn: (scope: wf.CancellationScope) => Promise<T>): Promise<T> {
    const scope = new wf.CancellationScope({ cancellable: true, parent: this.anchor });
    if (this.root.consideredCancelled) scope.cancel();
    this.inProgress = scope;
    try {
      return await scope.run(() => fn(scope));
    } finally {
      if (this.inProgress === scope) this.inProgress = null;
    }
  }

  /**
   * `wf.condition(fn, timeoutMs, { summary })` in a scope of its own: the same commands (a timer,
   * cancelled when `fn` becomes true first), so histories replay either way. Resolves true when
   * `fn` became true, false when the timer fired.
   */
  condition(fn: () => boolean, timeoutMs: number, options: wf.TimerOptions): Promise<boolean> {
    return this.run(async (scope) => {
      try {
        return await Promise.race([wf.sleep(timeoutMs, options).then(() => false), wf.condition(fn).then(() => true)]);
      } finally {
        // Cancels the timer when `fn` won, and unblocks the condition when the timer did.
        scope.cancel();
      }
    });
  }
}
