// batchRecharge through the real server: good and bad items, order, bounded in-flight,
// a stream dropped mid-batch (resumed with the same request_ids: no double debit), and a
// stream refused because the service token expired (renewed once, resumed).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import {
  batchRecharge,
  TokenExpired,
  type Credentials,
  InsufficientFunds,
  InvalidArgument,
  NotFound,
  PlanInactive,
  type BatchItem,
  type BatchProgress,
  type BatchResult,
} from "../src/index.js";
import {
  advanceServerClock,
  balance,
  client,
  control,
  ledger,
  newPlan,
  newUser,
  proxy,
  serviceClient,
} from "./support.js";

/** Past any access token's lifetime (the server's default is 10 minutes). */
const PAST_EXPIRY_SECONDS = 2 * 3600;

async function collect<T>(results: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const result of results) {
    out.push(result);
  }
  return out;
}

test("a batch of good and bad items: typed errors in place, the good ones debited once each", async () => {
  const { gc } = await serviceClient(["recharges.write"]);
  const rich = await newUser("100.00");
  const poor = await newUser("1.00");
  const planId = BigInt(await newPlan("10.00"));
  const inactive = BigInt(await newPlan("10.00", "inactive"));
  const good = (i: number): BatchItem => ({
    userId: BigInt(rich.userId),
    phoneNumber: rich.phoneNumber,
    planId,
    requestId: `good-${i}-${rich.userId}`,
  });
  const items: BatchItem[] = [
    good(0),
    { userId: BigInt(poor.userId), phoneNumber: poor.phoneNumber, planId },
    good(1),
    { userId: BigInt(rich.userId), phoneNumber: rich.phoneNumber, planId: inactive },
    { userId: BigInt(rich.userId), phoneNumber: "12", planId },
    good(2),
    { userId: 2_000_000_000n, phoneNumber: rich.phoneNumber, planId },
    good(3),
  ];
  const progress: BatchProgress[] = [];
  const results: BatchResult[] = [];
  for await (const result of batchRecharge(gc, items, {
    maxInFlight: 3,
    onProgress: (p) => progress.push(p),
  })) {
    results.push(result);
  }
  assert.deepEqual(
    results.map((r) => r.index),
    items.map((_, i) => i),
    "in input order",
  );
  assert.ok(results.every((r, i) => r.item === items[i]));
  assert.ok(progress.every((p) => p.inFlight <= 3));
  assert.deepEqual(progress.at(-1), {
    done: 8,
    succeeded: 4,
    failed: 4,
    inFlight: 0,
    reconnects: 0,
  });
  for (const i of [0, 2, 5, 7]) {
    assert.ok(results[i]!.recharge, `item ${i} succeeded`);
    assert.equal(results[i]!.requestId, items[i]!.requestId, "the caller's request_id is kept");
  }
  assert.ok(results[1]!.error instanceof InsufficientFunds);
  assert.ok(results[3]!.error instanceof PlanInactive);
  assert.ok(results[4]!.error instanceof InvalidArgument);
  assert.ok(results[4]!.error.fieldViolations.length > 0);
  assert.ok(results[6]!.error instanceof NotFound);
  assert.match(results[1]!.requestId, /^[0-9a-f-]{36}$/, "a request_id was generated");
  assert.equal(results[1]!.error.requestId, results[1]!.requestId);

  const debits = (await ledger(rich.userId)).filter((row) => row.type === "debit");
  assert.equal(debits.length, 4);
  assert.deepEqual(
    new Set(debits.map((d) => BigInt(d.txnId))),
    new Set([0, 2, 5, 7].map((i) => results[i]!.recharge!.transaction!.txnId)),
  );
  assert.equal(await balance(rich.userId), "60.00");
  assert.equal(await balance(poor.userId), "1.00");
  await control("assert_ledger");
});

test("a BatchRecharge stream dropped mid-batch resumes with the same request_ids: no double debit", async () => {
  const { gc } = await serviceClient(["recharges.write"], { viaProxy: true });
  const users = await Promise.all([newUser("500.00"), newUser("500.00"), newUser("500.00")]);
  const planId = BigInt(await newPlan("7.00"));
  const count = 60;
  const items = function* (): Generator<BatchItem> {
    for (let i = 0; i < count; i++) {
      const user = users[i % users.length]!;
      yield { userId: BigInt(user.userId), phoneNumber: user.phoneNumber, planId };
    }
  };
  await gc.auth.getMe({}); // connected (and the token issued) before arming
  const droppedBefore = Number(await proxy("dropped"));
  await proxy("arm-data 10"); // the 10th BatchRecharge answer never arrives: the connection drops
  const results: BatchResult[] = [];
  let last: BatchProgress | undefined;
  for await (const result of batchRecharge(gc, items(), {
    maxInFlight: 16,
    onProgress: (p) => (last = p),
  })) {
    results.push(result);
  }
  assert.equal(Number(await proxy("dropped")), droppedBefore + 1, "the stream was cut once");
  assert.equal(last?.reconnects, 1);
  assert.equal(results.length, count);
  assert.deepEqual(
    results.filter((r) => r.error).map((r) => String(r.error)),
    [],
  );
  const txnIds = results.map((r) => r.recharge!.transaction!.txnId);
  assert.equal(new Set(txnIds).size, count, "one transaction per item");
  assert.equal(new Set(results.map((r) => r.requestId)).size, count);
  for (const user of users) {
    const debits = (await ledger(user.userId)).filter((row) => row.type === "debit");
    assert.equal(debits.length, count / users.length, "one debit per item, none twice");
    assert.equal(await balance(user.userId), (500 - 7 * (count / users.length)).toFixed(2));
  }
  await control("assert_ledger");
});

test("a BatchRecharge refused for an expired token: one renewal for concurrent batches, the same request_ids resent", async () => {
  const { gc, credentials } = await serviceClient(["recharges.write"]);
  const user = await newUser("100.00");
  const planId = BigInt(await newPlan("10.00"));
  await gc.auth.getMe({}); // the token is issued: the client holds it as good for minutes
  assert.equal(credentials.issueCount, 1);
  await advanceServerClock(PAST_EXPIRY_SECONDS); // ... the server now finds it expired
  const batch = (n: number): BatchItem[] =>
    Array.from({ length: n }, () => ({
      requestId: randomUUID(),
      userId: BigInt(user.userId),
      phoneNumber: user.phoneNumber,
      planId,
    }));
  const [first, second] = [batch(3), batch(2)];
  const progress: BatchProgress[] = [];
  const [a, b] = await Promise.all([
    collect(batchRecharge(gc, first, { onProgress: (p) => void progress.push(p) })),
    collect(batchRecharge(gc, second)),
  ]);
  assert.equal(credentials.issueCount, 2, "one new token for both streams");
  assert.equal(progress.at(-1)?.reconnects, 1, "the stream was opened again once");
  for (const [results, items] of [
    [a, first],
    [b, second],
  ] as const) {
    assert.deepEqual(
      results.map((r) => r.requestId),
      items.map((i) => i.requestId),
      "each item answered once, under its own request_id",
    );
    assert.deepEqual(
      results.filter((r) => r.error).map((r) => String(r.error)),
      [],
    );
  }
  const debits = (await ledger(user.userId)).filter((row) => row.type === "debit");
  assert.equal(debits.length, 5, "one debit per item");
  assert.equal(await balance(user.userId), "50.00");
  await control("assert_ledger");
});

test("a BatchRecharge refused as expired twice in a row fails with TokenExpired", async () => {
  const { gc: service } = await serviceClient(["recharges.write"]);
  await service.auth.getMe({});
  const user = await newUser("100.00");
  const planId = BigInt(await newPlan("10.00"));
  // Credentials whose every token is expired (a renewal that does not help).
  const live = await (service.options.credentials as Credentials).accessToken();
  const expired = await control<string>("expired_token", { accessToken: live });
  let renewals = 0;
  const stale: Credentials = {
    accessToken: async () => expired,
    renew: async () => {
      renewals++;
      return true;
    },
  };
  const gc = client().withCredentials(stale);
  const items = [{ userId: BigInt(user.userId), phoneNumber: user.phoneNumber, planId }];
  await assert.rejects(collect(batchRecharge(gc, items)), (error: unknown) => {
    assert.ok(error instanceof TokenExpired, String(error));
    return true;
  });
  assert.equal(renewals, 2, "renewed after each refusal; reopened once");
  assert.equal(await balance(user.userId), "100.00", "nothing debited");
});
