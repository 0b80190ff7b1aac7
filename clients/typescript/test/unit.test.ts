// Unit tests (no server): money helpers, the generated methods table, the retry
// classification and backoff, error decoding, the interceptors over an in-memory transport.

import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import {
  AdminService,
  DEFAULT_RETRY_POLICY,
  InsufficientFunds,
  InvalidArgument,
  InvalidToken,
  METHODS,
  MoneyError,
  RateLimited,
  RechargeService,
  SERVICES,
  TokenExpired,
  Unavailable,
  backoffMs,
  batchRecharge,
  fromMinorUnits,
  fromStatus,
  localName,
  lostConnectionInterceptor,
  money,
  moneyToString,
  pathOf,
  requestIdInterceptor,
  retryDelayMs,
  retryInterceptor,
  toGenChargeError,
  toMinorUnits,
  withRetry,
  type MethodInfo,
} from "../src/index.js";
import { StatusSchema } from "../src/gen/google/rpc/status_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";

test("money: decimal strings <-> bigint minor units, no floats, INR only", () => {
  assert.equal(toMinorUnits("199.50"), 19950n);
  assert.equal(toMinorUnits("199.5"), 19950n);
  assert.equal(toMinorUnits("0.01"), 1n);
  assert.equal(toMinorUnits("-12.30"), -1230n);
  assert.equal(toMinorUnits("92233720368547758.07"), 9223372036854775807n);
  assert.equal(fromMinorUnits(19950n), "199.50");
  assert.equal(fromMinorUnits(5n), "0.05");
  assert.equal(fromMinorUnits(-1230n), "-12.30");
  for (const bad of ["1.005", "1e3", "", "abc", "1.", ".5", "1,00", "NaN"]) {
    assert.throws(() => toMinorUnits(bad), MoneyError, bad);
  }
  assert.throws(() => toMinorUnits(1.5 as unknown as string), MoneyError);
  assert.throws(() => fromMinorUnits(150 as unknown as bigint), MoneyError);
  const m = money("199.50");
  assert.equal(m.unitsMinor, 19950n);
  assert.equal(m.currencyCode, "INR");
  assert.equal(money(250n).unitsMinor, 250n);
  assert.throws(() => money("1.00", "USD"), MoneyError);
  assert.equal(moneyToString(m), "199.50");
  assert.equal(moneyToString({ ...m, currencyCode: "" }), "199.50");
  assert.throws(() => moneyToString({ ...m, currencyCode: "USD" }), MoneyError);
});

test("the generated methods table covers every RPC and its fields resolve", () => {
  const paths = new Set<string>();
  for (const service of Object.values(SERVICES)) {
    for (const method of service.methods) {
      const info = METHODS[pathOf(method)];
      assert.ok(info, pathOf(method));
      paths.add(pathOf(method));
      if (info.requestIdField) {
        assert.equal(localName(method.input, info.requestIdField), "requestId");
      }
      if (info.pagination) {
        assert.equal(method.input.fields.find((f) => f.name === "page_token")?.fieldKind, "scalar");
        const items = method.output.fields.find((f) => f.name === info.pagination!.itemsField);
        assert.equal(items?.fieldKind, "list");
      }
      assert.equal(info.kind, method.methodKind);
    }
  }
  assert.deepEqual(new Set(Object.keys(METHODS)), paths);
  const recharge = METHODS["/gencharge.v1.RechargeService/Recharge"]!;
  assert.equal(recharge.requestIdField, "request_id");
  assert.equal(recharge.readOnly, false);
  assert.equal(METHODS["/gencharge.v1.WalletService/GetWallet"]!.readOnly, true);
  assert.equal(METHODS["/gencharge.v1.BackupService/VerifyBackup"]!.readOnly, true, "ACTION_READ");
  assert.equal(METHODS["/gencharge.v1.AuthService/RefreshToken"]!.readOnly, false);
  assert.equal(METHODS["/gencharge.v1.AuthService/RefreshToken"]!.requestIdField, null);
  assert.equal(METHODS["/gencharge.v1.RechargeService/BatchRecharge"]!.kind, "bidi_streaming");
  assert.equal(METHODS["/gencharge.v1.PlanService/ListPlans"]!.pagination?.itemsField, "plans");
  const moneyMoving = Object.entries(METHODS)
    .filter(([, info]) => info.requestIdField)
    .map(([path]) => path.split("/")[2])
    .sort();
  assert.deepEqual(moneyMoving, [
    "AdjustWallet",
    "ApproveWalletAdjustment",
    "BatchRecharge",
    "ConfirmPayment",
    "CreateAutoPay",
    "PayBill",
    "Recharge",
    "RefundTransaction",
    "RejectWalletAdjustment",
    "SendNotification",
    "TopUp",
  ]);
});

function status(
  code: Code,
  reason: string,
  metadata: Record<string, string> = {},
  violations: string[] = [],
) {
  const details = [
    anyPack(ErrorInfoSchema, create(ErrorInfoSchema, { reason, domain: "gencharge.v1", metadata })),
  ];
  if (violations.length) {
    details.push(
      anyPack(
        BadRequestSchema,
        create(BadRequestSchema, {
          fieldViolations: violations.map((field) => ({ field, description: "is bad" })),
        }),
      ),
    );
  }
  return create(StatusSchema, { code, message: "nope", details });
}

function connectError(
  code: Code,
  reason: string,
  metadata: Record<string, string> = {},
): ConnectError {
  const bin = Buffer.from(toBinary(StatusSchema, status(code, reason, metadata))).toString(
    "base64",
  );
  return new ConnectError("nope", code, { "grpc-status-details-bin": bin });
}

test("retry classification comes from the methods table", () => {
  const policy = { ...DEFAULT_RETRY_POLICY, random: () => 0.5 };
  const money = METHODS["/gencharge.v1.RechargeService/Recharge"];
  const read = METHODS["/gencharge.v1.WalletService/GetWallet"];
  const write = METHODS["/gencharge.v1.AuthService/UpdateMe"];
  const unavailable = new ConnectError("down", Code.Unavailable);
  const deadline = new ConnectError("slow", Code.DeadlineExceeded);
  const inProgress = connectError(Code.FailedPrecondition, "IN_PROGRESS");
  const funds = connectError(Code.FailedPrecondition, "INSUFFICIENT_FUNDS");
  const limited = connectError(Code.ResourceExhausted, "TOO_MANY_ATTEMPTS", {
    retry_after_seconds: "2",
  });
  const cases: [ConnectError, MethodInfo | undefined, boolean][] = [
    [unavailable, money, true],
    [unavailable, read, true],
    [unavailable, write, false],
    [unavailable, undefined, false],
    [deadline, money, true],
    [deadline, read, true],
    [deadline, write, false],
    [inProgress, money, true],
    [inProgress, read, false],
    [funds, money, false],
    [limited, read, false],
    [new ConnectError("x", Code.Internal), read, false],
    [new ConnectError("x", Code.Unauthenticated), read, false],
  ];
  for (const [error, info, retried] of cases) {
    assert.equal(
      retryDelayMs(error, info, policy, 1) !== undefined,
      retried,
      `${Code[error.code]} ${info?.method}`,
    );
  }
  assert.equal(
    retryDelayMs(unavailable, money, policy, policy.maxAttempts),
    undefined,
    "attempts run out",
  );
  const optedIn = { ...policy, retryResourceExhausted: true };
  assert.equal(retryDelayMs(limited, read, optedIn, 1), 2000, "waits retry_after_seconds");
  assert.equal(
    retryDelayMs(
      connectError(Code.ResourceExhausted, "X", { retry_after_seconds: "900" }),
      read,
      optedIn,
      1,
    ),
    undefined,
    "too long a wait is not retried",
  );
});

test("full-jitter backoff stays within the exponential cap", () => {
  const values: number[] = [];
  const policy = { ...DEFAULT_RETRY_POLICY, random: () => 0.999 };
  for (let retry = 1; retry <= 10; retry++) {
    values.push(backoffMs(policy, retry));
  }
  assert.deepEqual(values.slice(0, 4), [99, 199, 399, 799]);
  assert.ok(values.every((v) => v <= policy.maxBackoffMs));
  assert.equal(backoffMs({ ...policy, random: () => 0 }, 5), 0);
});

test("errors decode reason, metadata and field violations into the right class", () => {
  const funds = fromStatus(status(Code.FailedPrecondition, "INSUFFICIENT_FUNDS"));
  assert.ok(funds instanceof InsufficientFunds);
  assert.equal(funds.reason, "INSUFFICIENT_FUNDS");
  const bad = fromStatus(
    status(Code.InvalidArgument, "INVALID_ARGUMENT", {}, ["amount.units_minor"]),
  );
  assert.ok(bad instanceof InvalidArgument);
  assert.deepEqual(bad.fieldViolations, [{ field: "amount.units_minor", description: "is bad" }]);
  const expired = toGenChargeError(
    connectError(Code.Unauthenticated, "INVALID_TOKEN", { cause: "expired" }),
  );
  assert.ok(expired instanceof TokenExpired);
  assert.ok(expired instanceof InvalidToken);
  assert.ok(
    !(
      fromStatus(status(Code.Unauthenticated, "INVALID_TOKEN", { cause: "malformed" })) instanceof
      TokenExpired
    ),
  );
  const limited = toGenChargeError(
    connectError(Code.ResourceExhausted, "TOO_MANY_ATTEMPTS", { retry_after_seconds: "7" }),
  );
  assert.ok(limited instanceof RateLimited);
  assert.equal(limited.retryAfterSeconds, 7);
  // A reason only counts under the code that documents it.
  const odd = fromStatus(status(Code.NotFound, "INSUFFICIENT_FUNDS"));
  assert.ok(!(odd instanceof InsufficientFunds));
  assert.equal(odd.constructor.name, "NotFound");
  // No details at all: the code's class.
  const bare = toGenChargeError(new ConnectError("down", Code.Unavailable));
  assert.ok(bare instanceof Unavailable);
  assert.equal(bare.reason, "UNAVAILABLE");
});

test("one request_id per logical call, reused on every retry; deadlines per attempt", async () => {
  const seen: string[] = [];
  let calls = 0;
  const transport = createRouterTransport(
    ({ service }) => {
      service(RechargeService, {
        recharge(request) {
          seen.push(request.requestId);
          if (++calls < 3) {
            throw new ConnectError("lost", Code.Unavailable);
          }
          return {};
        },
        async getRecharge(_request, context) {
          // Never answers: each attempt ends only by its deadline (no race with a timer).
          await new Promise((_resolve, reject) => {
            context.signal.addEventListener("abort", () => reject(context.signal.reason));
          });
          return {};
        },
      });
    },
    {
      transport: {
        interceptors: [
          requestIdInterceptor(),
          retryInterceptor({ policy: { initialBackoffMs: 1 }, timeoutMs: 20 }),
        ],
      },
    },
  );
  const client = createClient(RechargeService, transport);
  await client.recharge({ phoneNumber: "9876543210", planId: 1n });
  assert.equal(seen.length, 3);
  assert.match(seen[0]!, /^[0-9a-f-]{36}$/);
  assert.equal(new Set(seen).size, 1, "the same request_id on each attempt");
  calls = 0;
  seen.length = 0;
  await client.recharge({ requestId: "mine", phoneNumber: "9876543210", planId: 1n });
  assert.deepEqual(seen, ["mine", "mine", "mine"]);
  // GetRecharge is read-only: each 20 ms attempt times out and is retried, 4 in all.
  const attempts: number[] = [];
  await assert.rejects(
    client.getRecharge({ txnId: 1n }, withRetry({ onRetry: (e) => void attempts.push(e.attempt) })),
    (error: ConnectError) => {
      assert.equal(error.code, Code.DeadlineExceeded);
      return true;
    },
  );
  assert.deepEqual(attempts, [1, 2, 3]);
});

test("a read-only server stream is retried until its first message, never after it", async () => {
  let opened = 0;
  let failBeforeFirst = 0;
  let failAfterFirst = false;
  const transport = createRouterTransport(
    ({ service }) => {
      service(AdminService, {
        async *downloadReport(request) {
          opened++;
          if (failBeforeFirst > 0) {
            failBeforeFirst--;
            throw new ConnectError("lost", Code.Unavailable);
          }
          yield { data: new Uint8Array([1]), offset: 0n, sizeBytes: 2n };
          if (failAfterFirst) {
            throw new ConnectError("lost", Code.Unavailable);
          }
          yield { data: new Uint8Array([Number(request.reportId)]), offset: 1n };
        },
      });
    },
    {
      transport: {
        interceptors: [
          requestIdInterceptor(),
          retryInterceptor({ policy: { initialBackoffMs: 1 } }),
        ],
      },
    },
  );
  const client = createClient(AdminService, transport);
  const download = async (): Promise<number[]> => {
    const bytes: number[] = [];
    for await (const chunk of client.downloadReport({ reportId: 7n })) {
      bytes.push(...chunk.data);
    }
    return bytes;
  };
  failBeforeFirst = 2;
  assert.deepEqual(await download(), [1, 7], "the same request, sent again");
  assert.equal(opened, 3);
  // After the first message: the failure reaches the caller, the stream is not restarted.
  opened = 0;
  failAfterFirst = true;
  const received: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const chunk of client.downloadReport({ reportId: 7n })) {
        received.push(...chunk.data);
      }
    })(),
    (error: ConnectError) => {
      assert.equal(error.code, Code.Unavailable);
      return true;
    },
  );
  assert.deepEqual(received, [1]);
  assert.equal(opened, 1);
  // Past maxAttempts before any message: the last failure.
  opened = 0;
  failAfterFirst = false;
  failBeforeFirst = 10;
  await assert.rejects(download(), (error: ConnectError) => error.code === Code.Unavailable);
  assert.equal(opened, DEFAULT_RETRY_POLICY.maxAttempts);
});

test("a dropped connection (CANCEL reset, ECONNRESET) is UNAVAILABLE unless the caller aborted", async () => {
  const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
  const cases: [ConnectError, boolean, Code][] = [
    [
      new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled),
      false,
      Code.Unavailable,
    ],
    [
      new ConnectError("read ECONNRESET", Code.Aborted, undefined, undefined, reset),
      false,
      Code.Unavailable,
    ],
    [new ConnectError("aborted by the server", Code.Aborted), false, Code.Aborted],
    [new ConnectError("cancelled", Code.Canceled), true, Code.Canceled],
  ];
  for (const [error, aborted, expected] of cases) {
    const controller = new AbortController();
    if (aborted) {
      controller.abort();
    }
    const call = lostConnectionInterceptor()(async () => {
      throw error;
    });
    const request = { signal: controller.signal } as Parameters<typeof call>[0];
    await assert.rejects(call(request), (e: ConnectError) => {
      assert.equal(e.code, expected, error.rawMessage);
      return true;
    });
  }
});

test("batchRecharge resends unanswered items with their request_ids after a lost stream, and IN_PROGRESS ones later", async () => {
  const received: string[][] = [];
  const answered = new Set<string>();
  let streams = 0;
  const transport = createRouterTransport(({ service }) => {
    service(RechargeService, {
      async *batchRecharge(requests) {
        const stream = ++streams;
        const seen: string[] = [];
        received.push(seen);
        let index = 0n;
        for await (const request of requests) {
          seen.push(request.requestId);
          if (stream === 1 && seen.length === 4) {
            throw new ConnectError("connection lost", Code.Unavailable); // items 3.. unanswered
          }
          if (request.requestId === "item-5" && !answered.has("item-5-busy")) {
            answered.add("item-5-busy");
            yield {
              index: index++,
              requestId: request.requestId,
              result: { case: "error", value: status(Code.FailedPrecondition, "IN_PROGRESS") },
            };
            continue;
          }
          answered.add(request.requestId);
          yield {
            index: index++,
            requestId: request.requestId,
            result: { case: "recharge", value: {} },
          };
        }
      },
    });
  });
  const client = { recharge: createClient(RechargeService, transport) };
  const items = Array.from({ length: 8 }, (_, i) => ({
    requestId: `item-${i}`,
    userId: 1n,
    phoneNumber: "9876543210",
    planId: 1n,
  }));
  const results = [];
  let last;
  for await (const result of batchRecharge(client, items, {
    maxInFlight: 4,
    backoff: { initialBackoffMs: 1 },
    onProgress: (p) => (last = p),
  })) {
    results.push(result);
  }
  assert.deepEqual(
    results.map((r) => [r.index, r.requestId, r.error === undefined]),
    items.map((item, i) => [i, item.requestId, true]),
  );
  assert.equal(streams, 2);
  assert.deepEqual(received[0], ["item-0", "item-1", "item-2", "item-3"]);
  // The second stream starts with the unanswered items, same ids, in order.
  assert.deepEqual(received[1]!.slice(0, 1), ["item-3"]);
  assert.equal(received[1]!.filter((id) => id === "item-5").length, 2, "IN_PROGRESS sent again");
  assert.deepEqual(last, { done: 8, succeeded: 8, failed: 0, inFlight: 0, reconnects: 1 });
});
