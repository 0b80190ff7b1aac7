// Credentials through the real server: logins, refresh under concurrency (one refresh,
// the session survives), refresh-and-replay of an expired token, service tokens,
// redaction.

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { test } from "node:test";
import {
  BearerToken,
  RefreshTokenReused,
  ServiceAccountCredentials,
  SessionEnded,
  SessionCredentials,
  TokenExpired,
  Unavailable,
  type SessionTokens,
} from "../src/index.js";
import { adminClient, client, control, newUser, proxy, userClient } from "./support.js";

/** Counts the RefreshToken calls a client makes. */
function countingRefreshes(): { count: () => number; interceptor: Parameters<typeof client>[0] } {
  let refreshes = 0;
  return {
    count: () => refreshes,
    interceptor: {
      interceptors: [
        (next) => async (req) => {
          if (req.method.name === "RefreshToken") {
            refreshes++;
          }
          return next(req);
        },
      ],
    },
  };
}

test("50 concurrent calls with an access token about to expire: one refresh, the session survives", async () => {
  const user = await newUser("1.00");
  const counter = countingRefreshes();
  const base = client(counter.interceptor);
  const login = await SessionCredentials.login(base, user);
  const firstTokens = login.tokens();
  // A clock 30 s before the token's expiry: within the refresh skew (60 s).
  const expiresAt = login.accessTokenExpiresAtMs!;
  let now = expiresAt - 30_000;
  const stored: SessionTokens[] = [];
  const credentials = SessionCredentials.fromTokens(base, firstTokens, {
    clock: () => now,
    onTokens: (tokens) => void stored.push(tokens),
  });
  const gc = base.withCredentials(credentials);

  const wallets = await Promise.all(Array.from({ length: 50 }, () => gc.wallet.getWallet({})));
  assert.equal(wallets.length, 50);
  assert.equal(counter.count(), 1, "exactly one RefreshToken call");
  assert.equal(credentials.refreshCount, 1);
  assert.equal(stored.length, 1, "the new tokens were handed over once");
  const refreshed = credentials.tokens();
  assert.notEqual(refreshed.refreshToken, firstTokens.refreshToken);
  assert.equal(stored[0]!.refreshToken, refreshed.refreshToken);

  // The session survives: its newest refresh token still works ...
  now = Date.now();
  await credentials.refresh();
  assert.equal(counter.count(), 2);
  // ... and it is listed as active (and current).
  const sessions = [];
  for await (const session of gc.auth.listSessionsAll({})) {
    sessions.push(session);
  }
  const mine = sessions.find((s) => s.sessionId === credentials.sessionId);
  assert.ok(mine, "the session is listed");
  assert.equal(mine.isActive, true);
  assert.equal(mine.current, true);
});

test("an access token the server finds expired is refreshed once and the call replayed", async () => {
  const user = await newUser("2.50");
  const base = client();
  const login = await SessionCredentials.login(base, user);
  const expired = await control<string>("expired_token", {
    accessToken: login.tokens().accessToken,
  });
  // A client whose clock is behind: it believes the expired token is still fresh.
  const credentials = SessionCredentials.fromTokens(
    base,
    { ...login.tokens(), accessToken: expired, accessTokenExpiresAtMs: Date.now() + 600_000 },
    { clock: () => Date.now() - 3_600_000 },
  );
  const gc = base.withCredentials(credentials);
  const wallet = await gc.wallet.getWallet({});
  assert.equal(wallet.balance?.unitsMinor, 250n);
  assert.equal(credentials.refreshCount, 1);
  // A token that cannot be refreshed surfaces the typed error.
  const bare = base.withCredentials(new BearerToken(expired));
  await assert.rejects(bare.wallet.getWallet({}), TokenExpired);
});

test("OTP login", async () => {
  const user = await newUser("0", { verify: true });
  const base = client();
  await SessionCredentials.requestOtp(base, user.phoneNumber);
  const code = await control<string>("otp", { phoneNumber: user.phoneNumber });
  const credentials = await SessionCredentials.verifyOtp(base, {
    phoneNumber: user.phoneNumber,
    code,
  });
  const me = await base.withCredentials(credentials).auth.getMe({});
  assert.equal(me.kind.case, "user");
  assert.equal(me.kind.value?.userId, BigInt(user.userId));
});

test("admin login with the TOTP step", async () => {
  const { gc } = await adminClient();
  const me = await gc.auth.getMe({});
  assert.equal(me.kind.case, "admin");
  const page = await gc.admin.listUsers({ pageSize: 1 });
  assert.ok(Array.isArray(page.users));
});

test("a service account's token is issued once for concurrent calls, and again before expiry", async () => {
  const account = await control<{ clientId: string; clientSecret: string }>("service", {
    scopes: [],
  });
  const base = client();
  let now = Date.now();
  const credentials = new ServiceAccountCredentials(base, account, { clock: () => now });
  const gc = base.withCredentials(credentials);
  const answers = await Promise.all(Array.from({ length: 20 }, () => gc.auth.getMe({})));
  assert.equal(answers[0]!.kind.case, "serviceAccount");
  assert.equal(credentials.issueCount, 1, "one IssueServiceToken for 20 concurrent calls");
  // 30 s before the token expires, the next calls share one new token.
  now = credentials.accessTokenExpiresAtMs! - 30_000;
  await Promise.all([gc.auth.getMe({}), gc.auth.getMe({})]);
  assert.equal(credentials.issueCount, 2);
});

test("credentials and errors never show secrets", async () => {
  const user = await newUser();
  const { gc, credentials } = await userClient(user);
  const tokens = credentials.tokens();
  const service = await control<{ clientId: string; clientSecret: string }>("service", {
    scopes: [],
  });
  const serviceCredentials = new ServiceAccountCredentials(client(), service);
  for (const shown of [
    String(credentials),
    JSON.stringify(credentials),
    inspect(credentials, { showHidden: true, depth: 5 }),
    String(serviceCredentials),
    JSON.stringify(serviceCredentials),
    inspect(serviceCredentials, { showHidden: true, depth: 5 }),
    inspect(new BearerToken(tokens.accessToken), { showHidden: true }),
  ]) {
    assert.ok(!shown.includes(tokens.accessToken), shown);
    assert.ok(!shown.includes(tokens.refreshToken), shown);
    assert.ok(!shown.includes(service.clientSecret), shown);
  }
  const wrong = SessionCredentials.login(client(), {
    email: user.email,
    password: "wrong " + user.password,
  });
  await assert.rejects(wrong, (error: Error) => {
    assert.ok(!inspect(error).includes(user.password));
    return true;
  });
  await gc.auth.getMe({});
});

test("a RefreshToken whose answer is lost is not retried; the next refresh ends the session", async () => {
  const user = await newUser();
  const counter = countingRefreshes();
  const base = client({ ...counter.interceptor, viaProxy: true });
  const login = await SessionCredentials.login(base, user); // the connection is up
  const first = login.tokens();
  let now = Date.now();
  const credentials = SessionCredentials.fromTokens(base, first, { clock: () => now });
  const gc = base.withCredentials(credentials);
  now = credentials.accessTokenExpiresAtMs! - 10_000; // the next call refreshes first
  const droppedBefore = Number(await proxy("dropped"));
  await proxy("arm 1"); // ... and the RefreshToken answer is lost: the server rotated it
  await assert.rejects(gc.auth.getMe({}), (error: unknown) => {
    assert.ok(error instanceof Unavailable, String(error));
    return true;
  });
  assert.equal(Number(await proxy("dropped")), droppedBefore + 1);
  assert.equal(counter.count(), 1, "one RefreshToken call, not retried");
  assert.equal(credentials.refreshCount, 0);
  assert.equal(credentials.tokens().refreshToken, first.refreshToken);
  // The next call refreshes with the same (rotated) token: the server ends the session.
  await assert.rejects(gc.auth.getMe({}), RefreshTokenReused);
  assert.equal(counter.count(), 2);
  await assert.rejects(gc.auth.getMe({}), RefreshTokenReused); // for good: log in again
  assert.equal(counter.count(), 2, "an ended session is not refreshed again");
  await assert.rejects(
    client().withCredentials(new BearerToken(first.accessToken)).auth.getMe({}),
    SessionEnded,
  );
});
