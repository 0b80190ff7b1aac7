// Safe retries through the real server and the answer-losing proxy: the server does the
// work, the client never hears back; a retry carries the same request_id and the server
// answers with the original result.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Code,
  InProgress,
  ReportFormat,
  PaymentMethod,
  Unavailable,
  money,
  moneyToString,
  withRetry,
  type RetryEvent,
} from "../src/index.js";
import { createHash } from "node:crypto";
import {
  adminClient,
  balance,
  control,
  ledger,
  newPlan,
  newUser,
  proxy,
  userClient,
} from "./support.js";

test("a recharge whose answer is lost is retried with the same request_id and debits once", async () => {
  const user = await newUser("100.00");
  const planId = await newPlan("25.00");
  const retries: RetryEvent[] = [];
  const { gc } = await userClient(user, {
    viaProxy: true,
    retry: { onRetry: (e) => void retries.push(e) },
  });
  await gc.wallet.getWallet({}); // the connection is up before the proxy is armed
  const droppedBefore = Number(await proxy("dropped"));
  await proxy("arm 1");
  const recharge = await gc.recharge.recharge({
    phoneNumber: user.phoneNumber,
    planId: BigInt(planId),
    expectedAmount: money("25.00"),
  });
  assert.equal(Number(await proxy("dropped")), droppedBefore + 1, "the first answer was lost");
  assert.equal(retries.length, 1);
  assert.equal(retries[0]!.error.code, Code.Unavailable);
  assert.match(retries[0]!.requestId ?? "", /^[0-9a-f-]{36}$/);
  assert.equal(moneyToString(recharge.transaction?.amount), "25.00");
  const debits = (await ledger(user.userId)).filter((row) => row.type === "debit");
  assert.equal(debits.length, 1, "one debit");
  assert.equal(BigInt(debits[0]!.txnId), recharge.transaction?.txnId);
  assert.equal(await balance(user.userId), "75.00");
  await control("assert_ledger");
});

test("a read-only call is retried across a lost answer", async () => {
  const user = await newUser("12.34");
  const retries: RetryEvent[] = [];
  const { gc } = await userClient(user, {
    viaProxy: true,
    retry: { onRetry: (e) => void retries.push(e) },
  });
  await proxy("arm 1");
  const wallet = await gc.wallet.getWallet({});
  assert.equal(moneyToString(wallet.balance), "12.34");
  assert.equal(retries.length, 1);
  assert.equal(retries[0]!.method, "/gencharge.v1.WalletService/GetWallet");
});

test("a write without a request_id is never retried", async () => {
  const user = await newUser();
  const retries: RetryEvent[] = [];
  const { gc } = await userClient(user, {
    viaProxy: true,
    retry: { onRetry: (e) => void retries.push(e) },
  });
  await gc.wallet.getWallet({});
  await proxy("arm 1");
  await assert.rejects(
    gc.auth.updateMe({ profile: { name: "Renamed" }, updateMask: { paths: ["name"] } }),
    (error) => {
      assert.ok(error instanceof Unavailable, String(error));
      return true;
    },
  );
  assert.equal(retries.length, 0);
});

test("IN_PROGRESS is retried on a money call until its one outcome is recorded", async () => {
  const user = await newUser();
  const planId = await newPlan("31.00");
  const { gc } = await userClient(user);
  const request = {
    requestId: crypto.randomUUID(),
    phoneNumber: user.phoneNumber,
    planId: BigInt(planId),
    paymentMethod: PaymentMethod.CARD,
    paymentDetails: { details: { case: "card" as const, value: { cardToken: "tok_visa" } } },
    expectedAmount: money("31.00"),
  };
  // The gateway charges, the ledger row fails to record: UNAVAILABLE PAYMENT_NOT_RECORDED
  // (not retried here: one attempt), carrying the request_id to retry with.
  await control("fail_next_recording");
  await assert.rejects(gc.recharge.recharge(request, withRetry({ maxAttempts: 1 })), (error) => {
    assert.ok(error instanceof Unavailable);
    assert.equal(error.reason, "PAYMENT_NOT_RECORDED");
    assert.equal(error.requestId, request.requestId);
    return true;
  });
  // A retry now is IN_PROGRESS until the recovery job records the charge ...
  await assert.rejects(gc.recharge.recharge(request, withRetry({ maxAttempts: 1 })), InProgress);
  // ... and the SDK retries it: the recovery runs during the first backoff.
  const seen: RetryEvent[] = [];
  const recharge = await gc.recharge.recharge(
    request,
    withRetry({
      onRetry: async (event) => {
        seen.push(event);
        if (seen.length === 1) {
          assert.equal(await control<number>("recover"), 1);
        }
      },
    }),
  );
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.requestId, request.requestId);
  assert.equal(moneyToString(recharge.transaction?.amount), "31.00");
  const rows = await ledger(user.userId);
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(BigInt(rows[0]!.txnId), recharge.transaction?.txnId);
});

test("a read-only server stream (DownloadReport) whose connection is lost before its first message is retried", async () => {
  const retries: RetryEvent[] = [];
  const { gc } = await adminClient({
    viaProxy: true,
    retry: { onRetry: (e) => void retries.push(e) },
  });
  const report = await gc.admin.generateReport({ reportTypeId: 2n, format: ReportFormat.CSV });
  const droppedBefore = Number(await proxy("dropped"));
  await proxy("arm 1"); // the stream's response headers: nothing received yet
  const chunks = [];
  for await (const chunk of gc.admin.downloadReport({ reportId: report.reportId })) {
    chunks.push(chunk);
  }
  assert.equal(Number(await proxy("dropped")), droppedBefore + 1, "the first answer was lost");
  assert.equal(retries.length, 1);
  assert.equal(retries[0]!.method, "/gencharge.v1.AdminService/DownloadReport");
  assert.equal(retries[0]!.error.code, Code.Unavailable);
  const data = Buffer.concat(chunks.map((chunk) => chunk.data));
  assert.ok(data.length > 0);
  assert.equal(chunks[0]!.sizeBytes, BigInt(data.length));
  assert.equal(chunks[0]!.sha256, createHash("sha256").update(data).digest("hex"));
  assert.equal(chunks[0]!.sha256, report.sha256);
});
