/**
 * A progress line on a terminal: `applied 312/1000`, rewritten in place with `\r` on stderr, and
 * cleared when the work ends so the summary starts on a clean line. Nothing at all when stderr is
 * not a terminal (a pipe, a file, a test, `--json` output being parsed): the line is for eyes only.
 */
export interface ProgressLine {
  /** Shows `<verb> done/total`, at most every {@link REDRAW_INTERVAL_MS} (and always the last). */
  update(done: number, total: number): void;
  /** Erases the line. */
  end(): void;
}

/** Redrawing a terminal line for each of 1000 clients would cost more than it tells. */
const REDRAW_INTERVAL_MS = 100;

const SILENT: ProgressLine = { update: () => undefined, end: () => undefined };

/** `quiet`: no line even on a terminal (e.g. beside `--json`). */
export function progressLine(verb: string, options: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}): ProgressLine {
  const stream = options.stream ?? process.stderr;
  if (options.quiet === true || !stream.isTTY) return SILENT;
  let drawnAt = 0;
  let drawn = false;
  return {
    update(done, total) {
      const now = Date.now();
      if (done < total && now - drawnAt < REDRAW_INTERVAL_MS) return;
      drawnAt = now;
      drawn = true;
      stream.write(`\r${verb} ${done}/${total}`);
    },
    end() {
      // `\x1b[2K` erases the whole line; `\r` returns to its start.
      if (drawn) stream.write('\r\x1b[2K');
    },
  };
}
