// Test support: the addresses tests/clients/typescript/test_typescript_sdk.py passes, its
// control port (users, funds, plans, ledger, ...), the proxy's control port, and clients.

import { connect } from "node:net";
import { after } from "node:test";
import {
  createGenChargeClient,
  ServiceAccountCredentials,
  SessionCredentials,
  type ClientOptions,
  type GenChargeClient,
} from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: run these tests through tests/clients/typescript (pytest)`,
    );
  }
  return value;
}

export const env = {
  get address(): string {
    return required("GENCHARGE_ADDRESS");
  },
  get proxyAddress(): string {
    return required("GENCHARGE_PROXY_ADDRESS");
  },
  get proxyControlPort(): number {
    return Number(required("GENCHARGE_PROXY_CONTROL_PORT"));
  },
  get controlPort(): number {
    return Number(required("GENCHARGE_TEST_CONTROL_PORT"));
  },
};

/** One line to a TCP port, one line back. */
function exchange(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(line + "\n"));
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\n");
      if (end >= 0) {
        socket.end();
        resolve(buffer.slice(0, end));
      }
    });
    socket.on("error", reject);
  });
}

/** A command to the pytest side (see test_typescript_sdk.py Control). */
export async function control<T = unknown>(
  cmd: string,
  args: Record<string, unknown> = {},
): Promise<T> {
  const answer = JSON.parse(await exchange(env.controlPort, JSON.stringify({ cmd, ...args }))) as {
    ok: boolean;
    result?: T;
    error?: string;
  };
  if (!answer.ok) {
    throw new Error(`control ${cmd}: ${answer.error}`);
  }
  return answer.result as T;
}

/** Arm the answer-losing proxy: cut the connection on the server's next `n` response
 * HEADERS (`arm n`) or at its `k`-th DATA frame from now (`arm-data k`). */
export async function proxy(line: string): Promise<string> {
  const answer = await exchange(env.proxyControlPort, line);
  if (answer.startsWith("error")) {
    throw new Error(`proxy ${line}: ${answer}`);
  }
  return answer;
}

export interface TestUser {
  userId: number;
  email: string;
  phoneNumber: string;
  password: string;
}

/** A new customer, its wallet funded with `rupees`; `verify`: its contacts verified
 * (needed for an OTP login). */
export function newUser(rupees = "0", options: { verify?: boolean } = {}): Promise<TestUser> {
  return control<TestUser>("user", { ...(rupees === "0" ? {} : { rupees }), ...options });
}

export function newPlan(price: string, status = "active"): Promise<number> {
  return control<number>("plan", { price, status });
}

export interface LedgerRow {
  txnId: number;
  category: string;
  type: string;
  amount: string;
  source: string;
  status: string;
  paymentMethod: string;
}

export function ledger(userId: number): Promise<LedgerRow[]> {
  return control<LedgerRow[]>("ledger", { userId });
}

export function balance(userId: number): Promise<string> {
  return control<string>("balance", { userId });
}

/** A client to the server (or through the proxy), closed after the test file. */
export function client(
  options: Partial<ClientOptions> & { viaProxy?: boolean } = {},
): GenChargeClient {
  const { viaProxy, ...rest } = options;
  const gc = createGenChargeClient({ baseUrl: viaProxy ? env.proxyAddress : env.address, ...rest });
  after(() => gc.close());
  return gc;
}

/** A user's logged-in client. */
export async function userClient(
  user: TestUser,
  options: Partial<ClientOptions> & { viaProxy?: boolean } = {},
): Promise<{ gc: GenChargeClient; credentials: SessionCredentials }> {
  const base = client(options);
  const credentials = await SessionCredentials.login(base, {
    email: user.email,
    password: user.password,
  });
  return { gc: base.withCredentials(credentials), credentials };
}

/** Move the server's clocks `seconds` ahead: its token clock (a token issued before then
 * is as much older: past its lifetime, refused as expired) and its cache clock. */
export function advanceServerClock(seconds: number): Promise<void> {
  return control<void>("advance_clock", { seconds });
}

/** A new admin, logged in through the MFA step (first login: TOTP enrolment). */
export async function adminClient(
  options: Partial<ClientOptions> & { viaProxy?: boolean } = {},
): Promise<{
  gc: GenChargeClient;
  credentials: SessionCredentials;
}> {
  const admin = await control<{ email: string; password: string }>("admin");
  const base = client(options);
  const step = await SessionCredentials.adminLogin(base, admin);
  const secret = step.enrolment?.secret;
  if (!secret) {
    throw new Error("a first admin login offers a TOTP enrolment");
  }
  const credentials = await step.verify(await control<string>("totp", { secret }));
  return { gc: base.withCredentials(credentials), credentials };
}

/** A new service account holding `scopes`, and a client using its credentials. */
export async function serviceClient(
  scopes: string[],
  options: Partial<ClientOptions> & { viaProxy?: boolean } = {},
): Promise<{ gc: GenChargeClient; credentials: ServiceAccountCredentials }> {
  const account = await control<{ clientId: string; clientSecret: string }>("service", { scopes });
  const base = client(options);
  const credentials = new ServiceAccountCredentials(base, account);
  return { gc: base.withCredentials(credentials), credentials };
}
