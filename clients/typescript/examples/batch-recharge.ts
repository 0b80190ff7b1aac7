// An internal service: client credentials -> a BatchRecharge of 10,000 items with a
// progress bar. Each order's request_id is derived from the batch id and its position,
// so running the same batch again (after a crash, say) recharges nothing twice: the
// server answers every order it already ran with its original result.
//
// Configuration (environment): GENCHARGE_ADDRESS, GENCHARGE_CLIENT_ID,
// GENCHARGE_CLIENT_SECRET (a service account with the scope recharges.write),
// GENCHARGE_ORDERS (a JSON file: [{"userId": 12, "phoneNumber": "9876543210",
// "planId": 3}, ...], cycled through), GENCHARGE_BATCH_ID, GENCHARGE_BATCH_SIZE.
import { readFileSync } from "node:fs";
import {
  ServiceAccountCredentials,
  batchRecharge,
  createGenChargeClient,
  type BatchItem,
  type BatchProgress,
} from "@gencharge/client";

const total = Number(process.env.GENCHARGE_BATCH_SIZE ?? 10_000);
const batchId = process.env.GENCHARGE_BATCH_ID ?? `batch-${Date.now()}`;
const customers = JSON.parse(readFileSync(process.env.GENCHARGE_ORDERS!, "utf8")) as {
  userId: number;
  phoneNumber: string;
  planId: number;
}[];

const gc = createGenChargeClient({
  baseUrl: process.env.GENCHARGE_ADDRESS ?? "http://127.0.0.1:50051",
});
const credentials = new ServiceAccountCredentials(gc, {
  clientId: process.env.GENCHARGE_CLIENT_ID!,
  clientSecret: process.env.GENCHARGE_CLIENT_SECRET!,
});
const service = gc.withCredentials(credentials);

/** The orders, read lazily: only `maxInFlight` of them are in memory at a time. */
function* orders(): Generator<BatchItem> {
  for (let i = 0; i < total; i++) {
    const customer = customers[i % customers.length]!;
    yield {
      requestId: `${batchId}:${i}`,
      userId: BigInt(customer.userId),
      phoneNumber: customer.phoneNumber,
      planId: BigInt(customer.planId),
    };
  }
}

/** A one-line progress bar on a terminal; a line every 10% otherwise (logs, CI). */
let lastDecile = -1;
function showProgress(p: BatchProgress): void {
  const width = 30;
  const filled = Math.round((p.done / total) * width);
  const line =
    `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${p.done}/${total}` +
    ` ok ${p.succeeded} failed ${p.failed} reconnects ${p.reconnects}`;
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${line}`);
  } else if (Math.floor((p.done * 10) / total) > lastDecile) {
    lastDecile = Math.floor((p.done * 10) / total);
    process.stderr.write(`${line}\n`);
  }
}

const failures = new Map<string, number>();
const started = Date.now();
for await (const result of batchRecharge(service, orders(), {
  maxInFlight: 64,
  onProgress: showProgress,
})) {
  if (result.error) {
    // A failed order is a result, not an exception: count it by reason (and, in a real
    // service, record result.requestId and result.error.reason for follow-up).
    failures.set(result.error.reason, (failures.get(result.error.reason) ?? 0) + 1);
  }
}
const seconds = (Date.now() - started) / 1000;
process.stderr.write("\n");
const failed = [...failures.values()].reduce((a, b) => a + b, 0);
console.log(
  `batch ${batchId}: ${total - failed} recharged, ${failed} failed in ${seconds.toFixed(1)} s`,
);
for (const [reason, count] of failures) {
  console.log(`  ${reason}: ${count}`);
}
gc.close();
