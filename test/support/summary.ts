/**
 * Prints the run's closing line in the plain form CI reads (`tests: N passed, N failed, N skipped`)
 * from vitest's JSON report, and fails when no test ran at all.
 */
import { readFileSync } from 'node:fs';

const [reportPath] = process.argv.slice(2);
const report = JSON.parse(readFileSync(reportPath!, 'utf8')) as {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
};
console.log(
  `tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${report.numPendingTests + report.numTodoTests} skipped`,
);
if (report.numTotalTests === 0) {
  console.error('No test ran: that is a failure, not a pass.');
  process.exit(1);
}
