// Credentials: where the bearer token of every call comes from.
//
// - SessionCredentials: a user's or an admin's session (access + refresh token), from a
//   password login, an OTP login, an admin login's MFA step, or stored tokens. The access
//   token is refreshed before it expires (within `refreshSkewMs` of `exp`), and on an
//   UNAUTHENTICATED "expired" answer; refresh tokens are single use and a reused one ends
//   the session, so there is never more than one RefreshToken call in flight: concurrent
//   callers await the same one. The newest refresh token is stored (and handed to
//   `onTokens`, awaited) before the new access token is used.
// - ServiceAccountCredentials: an internal service's client id and secret; the token
//   (no refresh token) is issued again before it expires, one issue at a time.
// - BearerToken: a token as it is (a BFF passing on a token it was given).
//
// Secrets never appear in messages, String(), JSON or util.inspect output.

import { Code, type Client } from "@connectrpc/connect";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { PrincipalType } from "./gen/gencharge/v1/common_pb.js";
import type {
  AuthService,
  AuthTokens,
  MfaChallenge,
  TotpEnrolment,
} from "./gen/gencharge/v1/auth_service_pb.js";
import { GenChargeError, toGenChargeError } from "./errors.js";

/** What an authenticated client needs from its credentials. */
export interface Credentials {
  /** The access token to send now (refreshed or issued first when due). */
  accessToken(signal?: AbortSignal): Promise<string>;
  /** The server refused `rejected` as expired: make a fresh token available (one
   * refresh for all the callers that saw it). False when these credentials cannot. */
  renew(rejected: string): Promise<boolean>;
}

/** The AuthService part of a client (credentials call it without a token). */
export interface AuthClient {
  readonly auth: Client<typeof AuthService>;
}

export interface CredentialsOptions {
  /** Refresh when the access token expires within this many ms. Default: 60 s, or a
   * tenth of the token's lifetime if that is shorter. */
  refreshSkewMs?: number;
  /** The clock, in ms since the epoch. Default Date.now. */
  clock?: () => number;
}

const INSPECT = Symbol.for("nodejs.util.inspect.custom");
const DEFAULT_SKEW_MS = 60_000;

/** Tokens as a BFF stores them between requests. */
export interface SessionTokens {
  readonly accessToken: string;
  readonly refreshToken: string;
  /** When the access token expires (ms since the epoch); read from the JWT when absent. */
  readonly accessTokenExpiresAtMs?: number;
  readonly sessionId?: string;
}

export interface SessionOptions extends CredentialsOptions {
  /** Called with every new token pair, before the new access token is used (awaited):
   * persist the refresh token here. */
  onTokens?: (tokens: SessionTokens) => void | Promise<void>;
}

function jwtClaims(token: string): { exp?: unknown; iat?: unknown } {
  const payload = token.split(".")[1];
  if (payload === undefined) {
    return {};
  }
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    return typeof claims === "object" && claims !== null ? claims : {};
  } catch {
    return {};
  }
}

/** `exp` of a JWT, in ms since the epoch (the signature is not checked: the server does). */
export function jwtExpiryMs(token: string): number | undefined {
  const { exp } = jwtClaims(token);
  return typeof exp === "number" ? exp * 1000 : undefined;
}

function expiryOf(accessToken: string, expiresAt: Timestamp | undefined): number | undefined {
  return expiresAt !== undefined ? timestampMs(expiresAt) : jwtExpiryMs(accessToken);
}

/** How long before expiry to refresh: the option, else 60 s or a tenth of the token's
 * lifetime (`exp - iat`) if that is shorter. */
function skewFor(
  options: CredentialsOptions,
  accessToken: string,
  expiresAt: number | undefined,
): number {
  if (options.refreshSkewMs !== undefined) {
    return options.refreshSkewMs;
  }
  const { iat } = jwtClaims(accessToken);
  if (expiresAt === undefined || typeof iat !== "number") {
    return DEFAULT_SKEW_MS;
  }
  return Math.min(DEFAULT_SKEW_MS, Math.max(0, (expiresAt - iat * 1000) / 10));
}

/** A login session's tokens, refreshed before expiry, one refresh at a time. */
export class SessionCredentials implements Credentials {
  readonly #client: AuthClient;
  readonly #options: SessionOptions;
  readonly #clock: () => number;
  #accessToken: string;
  #refreshToken: string;
  #expiresAt: number | undefined;
  #skew: number;
  #sessionId: string;
  #refreshing: Promise<void> | null = null;
  #ended: GenChargeError | null = null;
  #refreshes = 0;

  private constructor(client: AuthClient, tokens: SessionTokens, options: SessionOptions) {
    this.#client = client;
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
    this.#accessToken = tokens.accessToken;
    this.#refreshToken = tokens.refreshToken;
    this.#expiresAt = tokens.accessTokenExpiresAtMs ?? jwtExpiryMs(tokens.accessToken);
    this.#skew = skewFor(options, tokens.accessToken, this.#expiresAt);
    this.#sessionId = tokens.sessionId ?? "";
  }

  /** Credentials over tokens obtained earlier (e.g. stored by a BFF). */
  static fromTokens(
    client: AuthClient,
    tokens: SessionTokens,
    options: SessionOptions = {},
  ): SessionCredentials {
    return new SessionCredentials(client, tokens, options);
  }

  /** From an AuthTokens message (Login, VerifyOtp, VerifyMfa, Register). */
  static fromAuthTokens(
    client: AuthClient,
    tokens: AuthTokens,
    options: SessionOptions = {},
  ): SessionCredentials {
    return new SessionCredentials(client, sessionTokens(tokens), options);
  }

  /** A user's password login (e-mail or phone number). */
  static async login(
    client: AuthClient,
    login: { email?: string; phoneNumber?: string; password: string; userAgent?: string },
    options: SessionOptions = {},
  ): Promise<SessionCredentials> {
    const reply = await call(() =>
      client.auth.login({
        identifier: identifier(login),
        password: login.password,
        principalType: PrincipalType.USER,
        userAgent: login.userAgent ?? "",
      }),
    );
    if (reply.result.case !== "tokens") {
      throw new Error("this login needs a second factor: use SessionCredentials.adminLogin");
    }
    return SessionCredentials.fromAuthTokens(client, reply.result.value, options);
  }

  /** Send a login code to a verified phone number (then `verifyOtp`). */
  static async requestOtp(client: AuthClient, phoneNumber: string): Promise<void> {
    await call(() => client.auth.requestOtp({ phoneNumber }));
  }

  /** A user's OTP login with the code sent by `requestOtp`. */
  static async verifyOtp(
    client: AuthClient,
    otp: { phoneNumber: string; code: string; userAgent?: string },
    options: SessionOptions = {},
  ): Promise<SessionCredentials> {
    const tokens = await call(() =>
      client.auth.verifyOtp({
        phoneNumber: otp.phoneNumber,
        code: otp.code,
        userAgent: otp.userAgent ?? "",
      }),
    );
    return SessionCredentials.fromAuthTokens(client, tokens, options);
  }

  /** An admin's login: answers the MFA step to complete with a TOTP code. */
  static async adminLogin(
    client: AuthClient,
    login: { email?: string; phoneNumber?: string; password: string; userAgent?: string },
    options: SessionOptions = {},
  ): Promise<MfaStep> {
    const reply = await call(() =>
      client.auth.login({
        identifier: identifier(login),
        password: login.password,
        principalType: PrincipalType.ADMIN,
        userAgent: login.userAgent ?? "",
      }),
    );
    if (reply.result.case !== "mfaChallenge") {
      throw new Error("an admin login always answers an MFA challenge");
    }
    return new MfaStep(client, reply.result.value, options);
  }

  /** The session these tokens belong to. */
  get sessionId(): string {
    return this.#sessionId;
  }

  /** How many refreshes these credentials made. */
  get refreshCount(): number {
    return this.#refreshes;
  }

  /** When the current access token expires (ms since the epoch), if known. */
  get accessTokenExpiresAtMs(): number | undefined {
    return this.#expiresAt;
  }

  /** The current tokens (to store them); secrets: never log them. */
  tokens(): SessionTokens {
    return {
      accessToken: this.#accessToken,
      refreshToken: this.#refreshToken,
      accessTokenExpiresAtMs: this.#expiresAt,
      sessionId: this.#sessionId,
    };
  }

  async accessToken(): Promise<string> {
    if (this.#ended !== null) {
      throw this.#ended;
    }
    if (this.#refreshing !== null) {
      await this.#refreshing; // a refresh under way: its token, not the one it replaces
    } else if (this.#expiresAt !== undefined && this.#clock() >= this.#expiresAt - this.#skew) {
      await this.refresh();
    }
    return this.#accessToken;
  }

  async renew(rejected: string): Promise<boolean> {
    if (this.#ended !== null) {
      return false;
    }
    if (rejected === this.#accessToken) {
      await this.refresh();
    }
    return true;
  }

  /** Refresh now (single-flight: concurrent callers share one RefreshToken call). */
  refresh(): Promise<void> {
    if (this.#ended !== null) {
      return Promise.reject(this.#ended);
    }
    if (this.#refreshing === null) {
      this.#refreshing = this.#refresh().finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const presented = this.#refreshToken;
    let tokens: AuthTokens;
    try {
      tokens = await this.#client.auth.refreshToken({ refreshToken: presented });
    } catch (caught) {
      const error = toGenChargeError(caught);
      // Refused (used, expired, revoked, blocked): the session is over for good.
      if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
        this.#ended = error;
      }
      throw error;
    }
    this.#refreshes++;
    const next = sessionTokens(tokens);
    // The newest refresh token first: it is the only one the session accepts now.
    this.#refreshToken = next.refreshToken;
    await this.#options.onTokens?.(next);
    this.#accessToken = next.accessToken;
    this.#expiresAt = next.accessTokenExpiresAtMs;
    this.#skew = skewFor(this.#options, this.#accessToken, this.#expiresAt);
    if (next.sessionId) {
      this.#sessionId = next.sessionId;
    }
  }

  /** Log out (this session, or every session of the account) through `client`, an
   * authenticated client using these credentials. */
  async logout(client: AuthClient, allSessions = false): Promise<void> {
    await call(() => client.auth.logout({ allSessions }));
  }

  toString(): string {
    return `SessionCredentials(session=${this.#sessionId || "?"}, tokens redacted)`;
  }

  toJSON(): Record<string, string> {
    return { type: "SessionCredentials", sessionId: this.#sessionId, tokens: "[redacted]" };
  }

  [INSPECT](): string {
    return this.toString();
  }
}

/** The second step of an admin login: answer the challenge with a TOTP code. */
export class MfaStep {
  readonly #client: AuthClient;
  readonly #challenge: MfaChallenge;
  readonly #options: SessionOptions;

  constructor(client: AuthClient, challenge: MfaChallenge, options: SessionOptions) {
    this.#client = client;
    this.#challenge = challenge;
    this.#options = options;
  }

  /** On an admin's first login: the TOTP secret to enrol (shown once). */
  get enrolment(): TotpEnrolment | undefined {
    return this.#challenge.enrolment;
  }

  /** When the challenge expires (ms since the epoch). */
  get expiresAtMs(): number | undefined {
    return this.#challenge.expiresAt ? timestampMs(this.#challenge.expiresAt) : undefined;
  }

  /** VerifyMfa with the authenticator's current code: the admin's session. */
  async verify(totpCode: string): Promise<SessionCredentials> {
    const tokens = await call(() =>
      this.#client.auth.verifyMfa({ challengeToken: this.#challenge.challengeToken, totpCode }),
    );
    return SessionCredentials.fromAuthTokens(this.#client, tokens, this.#options);
  }

  toString(): string {
    return "MfaStep(challenge redacted)";
  }

  toJSON(): Record<string, string> {
    return { type: "MfaStep", challenge: "[redacted]" };
  }

  [INSPECT](): string {
    return this.toString();
  }
}

/** A service account's client credentials; its token is issued again before expiry. */
export class ServiceAccountCredentials implements Credentials {
  readonly #client: AuthClient;
  readonly #clientId: string;
  readonly #clientSecret: string;
  readonly #options: CredentialsOptions;
  readonly #clock: () => number;
  #accessToken = "";
  #expiresAt: number | undefined;
  #skew = 0;
  #issuing: Promise<void> | null = null;
  #issues = 0;

  constructor(
    client: AuthClient,
    account: { clientId: string; clientSecret: string },
    options: CredentialsOptions = {},
  ) {
    this.#client = client;
    this.#clientId = account.clientId;
    this.#clientSecret = account.clientSecret;
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
  }

  get clientId(): string {
    return this.#clientId;
  }

  /** When the current token expires (ms since the epoch), if one was issued. */
  get accessTokenExpiresAtMs(): number | undefined {
    return this.#expiresAt;
  }

  /** How many tokens these credentials were issued. */
  get issueCount(): number {
    return this.#issues;
  }

  async accessToken(): Promise<string> {
    const due =
      this.#accessToken === "" ||
      (this.#expiresAt !== undefined && this.#clock() >= this.#expiresAt - this.#skew);
    if (due) {
      await this.issue();
    }
    return this.#accessToken;
  }

  async renew(rejected: string): Promise<boolean> {
    if (rejected === this.#accessToken) {
      await this.issue();
    }
    return true;
  }

  /** Issue a new token now (single-flight). */
  issue(): Promise<void> {
    if (this.#issuing === null) {
      this.#issuing = this.#issue().finally(() => {
        this.#issuing = null;
      });
    }
    return this.#issuing;
  }

  async #issue(): Promise<void> {
    const reply = await call(() =>
      this.#client.auth.issueServiceToken({
        clientId: this.#clientId,
        clientSecret: this.#clientSecret,
      }),
    );
    this.#issues++;
    this.#accessToken = reply.accessToken;
    this.#expiresAt = expiryOf(reply.accessToken, reply.accessTokenExpiresAt);
    this.#skew = skewFor(this.#options, this.#accessToken, this.#expiresAt);
  }

  toString(): string {
    return `ServiceAccountCredentials(clientId=${this.#clientId}, secret redacted)`;
  }

  toJSON(): Record<string, string> {
    return {
      type: "ServiceAccountCredentials",
      clientId: this.#clientId,
      clientSecret: "[redacted]",
    };
  }

  [INSPECT](): string {
    return this.toString();
  }
}

/** A bearer token used as it is (never refreshed). */
export class BearerToken implements Credentials {
  readonly #token: string;

  constructor(token: string) {
    this.#token = token;
  }

  async accessToken(): Promise<string> {
    return this.#token;
  }

  async renew(): Promise<boolean> {
    return false;
  }

  toString(): string {
    return "BearerToken(redacted)";
  }

  toJSON(): Record<string, string> {
    return { type: "BearerToken", token: "[redacted]" };
  }

  [INSPECT](): string {
    return this.toString();
  }
}

function identifier(login: {
  email?: string;
  phoneNumber?: string;
}): { case: "email"; value: string } | { case: "phoneNumber"; value: string } {
  if (login.email) {
    return { case: "email", value: login.email };
  }
  if (login.phoneNumber) {
    return { case: "phoneNumber", value: login.phoneNumber };
  }
  throw new Error("a login needs an email or a phoneNumber");
}

function sessionTokens(tokens: AuthTokens): SessionTokens {
  return {
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessTokenExpiresAtMs: expiryOf(tokens.accessToken, tokens.accessTokenExpiresAt),
    sessionId: tokens.sessionId,
  };
}

/** Run a call, its failure as a GenChargeError. */
async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (caught) {
    throw toGenChargeError(caught);
  }
}
