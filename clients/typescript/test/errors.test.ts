// Typed errors, each provoked for real through the server: the class per code, the class
// per documented reason, ErrorInfo metadata and BadRequest field violations.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import {
  AccountBlocked,
  BearerToken,
  InvalidRefreshToken,
  InvalidToken,
  TokenExpired,
  Code,
  FailedPrecondition,
  GenChargeError,
  IdempotencyKeyReused,
  InsufficientFunds,
  InvalidArgument,
  InvalidCredentials,
  MissingScope,
  NotFound,
  PaymentDeclined,
  PaymentMethod,
  PermissionDenied,
  PlanInactive,
  PriceChanged,
  RateLimited,
  RefreshTokenReused,
  SessionCredentials,
  SessionEnded,
  money,
} from "../src/index.js";
import { adminClient, client, newPlan, newUser, serviceClient, userClient } from "./support.js";

/** The typed error a call fails with (failing the test if it succeeds). */
async function failure<E extends GenChargeError>(
  call: Promise<unknown>,
  cls: new (...args: never[]) => E,
): Promise<E> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof cls, `expected ${cls.name}, got ${String(error)}`);
    assert.equal((error as GenChargeError).domain, "gencharge.v1");
    return error as E;
  }
  assert.fail(`expected ${cls.name}, the call succeeded`);
}

test("INVALID_ARGUMENT carries the field violations", async () => {
  const user = await newUser();
  const { gc } = await userClient(user);
  const error = await failure(
    gc.recharge.quoteRecharge({ phoneNumber: "not a phone", planId: 0n }),
    InvalidArgument,
  );
  assert.equal(error.code, Code.InvalidArgument);
  assert.equal(error.codeName, "INVALID_ARGUMENT");
  const fields = error.fieldViolations.map((v) => v.field);
  assert.ok(fields.includes("phone_number"), fields.join());
  assert.ok(error.fieldViolations.every((v) => v.description.length > 0));
});

test("NOT_FOUND", async () => {
  const error = await failure(client().plan.getPlan({ planId: 2_000_000_000n }), NotFound);
  assert.equal(error.reason, "NOT_FOUND");
});

test("money errors: InsufficientFunds, PriceChanged, PlanInactive, PaymentDeclined, IdempotencyKeyReused", async () => {
  const user = await newUser("5.00");
  const { gc } = await userClient(user);
  const planId = BigInt(await newPlan("20.00"));
  const inactive = BigInt(await newPlan("20.00", "inactive"));
  const cheap = BigInt(await newPlan("1.00"));
  const phoneNumber = user.phoneNumber;

  const broke = await failure(gc.recharge.recharge({ phoneNumber, planId }), InsufficientFunds);
  assert.equal(broke.reason, "INSUFFICIENT_FUNDS");
  assert.match(broke.requestId ?? "", /^[0-9a-f-]{36}$/, "the SDK's request_id is on the error");

  const moved = await failure(
    gc.recharge.recharge({ phoneNumber, planId: cheap, expectedAmount: money("0.50") }),
    PriceChanged,
  );
  assert.ok(moved instanceof FailedPrecondition);

  const gone = await failure(gc.recharge.recharge({ phoneNumber, planId: inactive }), PlanInactive);
  assert.equal(gone.reason, "PLAN_INACTIVE");

  const declined = await failure(
    gc.recharge.recharge({
      phoneNumber,
      planId,
      paymentMethod: PaymentMethod.CARD,
      paymentDetails: { details: { case: "card", value: { cardToken: "tok_decline" } } },
    }),
    PaymentDeclined,
  );
  assert.equal(declined.code, Code.FailedPrecondition);

  const requestId = randomUUID();
  await gc.recharge.recharge({ requestId, phoneNumber, planId: cheap });
  const reused = await failure(
    gc.recharge.recharge({ requestId, phoneNumber, planId: cheap, offerId: 1n }),
    IdempotencyKeyReused,
  );
  assert.equal(reused.code, Code.AlreadyExists);
  assert.equal(reused.requestId, requestId);
});

test("login errors: InvalidCredentials, RateLimited with retryAfterSeconds, AccountBlocked", async () => {
  const user = await newUser();
  const base = client();
  const wrong = { email: user.email, password: "not the password" };
  await failure(SessionCredentials.login(base, wrong), InvalidCredentials);
  // Five failures from here block the account from this address for a while.
  for (let i = 0; i < 4; i++) {
    await failure(SessionCredentials.login(base, wrong), InvalidCredentials);
  }
  const limited = await failure(SessionCredentials.login(base, wrong), RateLimited);
  assert.equal(limited.code, Code.ResourceExhausted);
  assert.ok((limited.retryAfterSeconds ?? 0) > 0, JSON.stringify(limited.metadata));

  const other = await newUser();
  const { gc: admin } = await adminClient();
  await admin.admin.blockUser({ userId: BigInt(other.userId), reason: "SDK test" });
  const blocked = await failure(SessionCredentials.login(base, other), AccountBlocked);
  assert.ok(blocked instanceof PermissionDenied);
});

test("session errors: SessionEnded after logout, RefreshTokenReused ends the session, InvalidRefreshToken", async () => {
  const user = await newUser();
  const base = client();
  const first = await SessionCredentials.login(base, user);
  const gc = base.withCredentials(first);
  await gc.auth.getMe({});
  await first.logout(gc);
  await failure(gc.auth.getMe({}), SessionEnded);

  // Two holders of one refresh token: the second refresh is a reuse, and the server
  // ends the session for both (why the SDK never refreshes twice at once).
  const login = await SessionCredentials.login(base, user);
  const a = SessionCredentials.fromTokens(base, login.tokens());
  const b = SessionCredentials.fromTokens(base, login.tokens());
  await a.refresh();
  await failure(b.refresh(), RefreshTokenReused);
  await failure(base.withCredentials(a).auth.getMe({}), SessionEnded);
  // ... and its refresh token is dead too.
  await failure(a.refresh(), InvalidRefreshToken);
});

test("token errors: InvalidToken names its cause", async () => {
  const gc = client().withCredentials(new BearerToken("not-a-token"));
  const refused = await failure(gc.auth.getMe({}), InvalidToken);
  assert.ok(!(refused instanceof TokenExpired));
  assert.equal(refused.metadata["cause"], "malformed");
  const bogus = SessionCredentials.fromTokens(client(), {
    accessToken: "x.y.z",
    refreshToken: "no-such-refresh-token",
  });
  await failure(bogus.refresh(), InvalidRefreshToken);
});

test("MissingScope names the scope; an undocumented reason falls back to its code's class", async () => {
  const { gc } = await serviceClient([]);
  const user = await newUser();
  const planId = BigInt(await newPlan("3.00"));
  const missing = await failure(
    gc.recharge.quoteRecharge({
      userId: BigInt(user.userId),
      phoneNumber: user.phoneNumber,
      planId,
    }),
    MissingScope,
  );
  assert.equal(missing.scope, "recharges.write");

  const { gc: admin } = await adminClient();
  const noWallet = await failure(
    admin.recharge.quoteRecharge({ phoneNumber: user.phoneNumber, planId }),
    PermissionDenied,
  );
  assert.equal(noWallet.constructor, PermissionDenied);
  assert.equal(noWallet.reason, "NO_WALLET");
});
