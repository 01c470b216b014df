/**
 * A worker process of the concurrency workload (spec/support/workload.ts): receives the plans of
 * its clients as one JSON message, runs them, sends back each client's history as one message,
 * and exits.
 */
import { runClients, stringifyHistories } from '../spec/support/workload.js';
import type { ClientPlan } from '../spec/support/workload.js';

process.once('message', (message) => {
  const plans = JSON.parse(message as string) as ClientPlan[];
  runClients(plans).then((histories) => {
    for (const history of histories) process.send!(stringifyHistories([history]));
    // Sent in order: once the last empty message is through, everything before it is too.
    process.send!(stringifyHistories([]), () => process.disconnect());
  }, (err: unknown) => {
    console.error('workload worker failed:', err);
    process.exit(1);
  });
});
