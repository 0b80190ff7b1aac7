// The SDK's Connect interceptors, outermost first:
//
// 1. requestIdInterceptor: a money-moving unary call (its row in the methods table names
//    a request_id field) whose request_id is empty gets a UUID4, once per logical call:
//    it sits outside the retries, so every attempt carries the same id. Errors leaving it
//    carry the id and the gRPC path (GenChargeError.requestId / .method).
// 2. retryInterceptor: unary calls, with a per-attempt deadline (the default deadline),
//    and server-streaming calls until their first message (after it, a failure reaches
//    the caller: a stream is never restarted half-way); safe retries with full-jitter
//    backoff (src/retry.ts). A failure of the credentials themselves (their RefreshToken
//    or IssueServiceToken call) is never retried: a second refresh would present a
//    refresh token the server may already have rotated, and that ends the session.
// 3. authInterceptor: `authorization: Bearer <token>` on every non-public call, from the
//    credentials (which refresh before expiry, one refresh at a time); a unary call, or a
//    server stream before its first message, that the server refuses as expired is
//    refreshed once and replayed; any other stream refused so renews the credentials
//    (once for every caller) and fails, for its caller to reopen (batchRecharge does).
// 4. lostConnectionInterceptor (innermost): a call whose connection dropped fails with
//    UNAVAILABLE, as in gRPC, not CANCELED or ABORTED (Node resets the streams of a
//    closed HTTP/2 session with CANCEL, or reports ECONNRESET): only a call the caller
//    (or a deadline) aborted is CANCELED.

import { randomUUID } from "node:crypto";
import type { DescMessage } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createAsyncIterable,
  createDeadlineSignal,
  createLinkedAbortController,
} from "@connectrpc/connect/protocol";
import type { Credentials } from "./credentials.js";
import { annotate, GenChargeError, reasonOf } from "./errors.js";
import { localName, methodInfo, pathOf } from "./methods.js";
import {
  DEFAULT_RETRY_POLICY,
  RETRY_POLICY,
  retryDelayMs,
  sleep,
  type RetryPolicy,
} from "./retry.js";

/** Fills an empty request_id of a money-moving unary call with a UUID4 (once per call). */
export function requestIdInterceptor(): Interceptor {
  return (next) => async (req) => {
    const info = methodInfo(req.method);
    let requestId: string | undefined;
    if (!req.stream && info?.requestIdField) {
      const field = localName(req.method.input, info.requestIdField);
      const message = req.message as unknown as Record<string, unknown>;
      if (message[field] === "") {
        message[field] = randomUUID();
      }
      requestId = message[field] as string;
    }
    try {
      return await next(req);
    } catch (error) {
      throw annotate(error, { requestId, method: pathOf(req.method) });
    }
  };
}

const GRPC_TIMEOUT = "grpc-timeout";

/** The smaller of a `grpc-timeout` header value and `ms`, as a header value. */
function timeoutHeader(existing: string | null, ms: number): string {
  const match = existing?.match(/^(\d+)([HMSmun])$/);
  if (match) {
    const scale: Record<string, number> = {
      H: 3_600_000,
      M: 60_000,
      S: 1000,
      m: 1,
      u: 1e-3,
      n: 1e-6,
    };
    const current = Number(match[1]) * scale[match[2]!]!;
    if (current <= ms) {
      return existing!;
    }
  }
  return `${Math.max(1, Math.ceil(ms))}m`;
}

export interface RetryInterceptorOptions {
  /** The client's retry policy (per-call overrides come through `withRetry`). */
  policy?: Partial<RetryPolicy>;
  /** Deadline of each attempt of a unary call, in ms (undefined: none). */
  timeoutMs?: number;
}

type AnyStreamRequest = StreamRequest<DescMessage, DescMessage>;
type AnyStreamResponse = StreamResponse<DescMessage, DescMessage>;

/** The response of a streaming request (always a stream). */
function streamOf(
  res: UnaryResponse<DescMessage, DescMessage> | AnyStreamResponse,
): AnyStreamResponse {
  if (!res.stream) {
    throw new ConnectError("a streaming call answered as a unary one", Code.Internal);
  }
  return res;
}

/** A server-streaming request whose one input message can be sent again (Connect hands
 * it over as a one-shot async iterable). */
async function replayable(req: AnyStreamRequest): Promise<AnyStreamRequest> {
  const inputs: unknown[] = [];
  for await (const input of req.message) {
    inputs.push(input);
  }
  const message = {
    [Symbol.asyncIterator]: () => createAsyncIterable(inputs)[Symbol.asyncIterator](),
  } as AnyStreamRequest["message"];
  return { ...req, message };
}

/** The response of a stream once its first message (or its end) has arrived: a failure
 * before it throws here, where the call may still be retried; later ones reach the
 * caller as they come. */
async function untilFirstMessage(
  answer: UnaryResponse<DescMessage, DescMessage> | AnyStreamResponse,
): Promise<AnyStreamResponse> {
  const res = streamOf(answer);
  const messages = res.message[Symbol.asyncIterator]();
  const first = await messages.next();
  const message = (async function* () {
    if (first.done) {
      return;
    }
    try {
      yield first.value;
      yield* { [Symbol.asyncIterator]: () => messages };
    } finally {
      await messages.return?.();
    }
  })();
  return { ...res, message };
}

/** Safe retries of unary calls, each attempt with its own deadline, and of server
 * streams until their first message. */
export function retryInterceptor(options: RetryInterceptorOptions = {}): Interceptor {
  return (next) => async (req) => {
    if (req.stream && req.method.methodKind !== "server_streaming") {
      return next(req);
    }
    const info = methodInfo(req.method);
    const policy: RetryPolicy = {
      ...DEFAULT_RETRY_POLICY,
      ...options.policy,
      ...req.contextValues.get(RETRY_POLICY),
    };
    if (req.stream) {
      // A stream has no deadline of its own (only the caller's `timeoutMs`).
      const replay = await replayable(req);
      for (let attempt = 1; ; attempt++) {
        try {
          return await untilFirstMessage(
            await next({ ...replay, header: new Headers(req.header) }),
          );
        } catch (caught) {
          if (caught instanceof GenChargeError || req.signal.aborted) {
            throw caught; // the credentials failed, or the caller cancelled
          }
          const error = ConnectError.from(caught);
          const delayMs = retryDelayMs(error, info, policy, attempt);
          if (delayMs === undefined) {
            throw error;
          }
          await policy.onRetry?.({
            method: pathOf(req.method),
            attempt,
            error,
            delayMs,
            requestId: undefined,
          });
          await sleep(delayMs, req.signal);
        }
      }
    }
    const requestIdField = info?.requestIdField
      ? localName(req.method.input, info.requestIdField)
      : undefined;
    for (let attempt = 1; ; attempt++) {
      let signal = req.signal;
      let cleanup = (): void => {};
      const header = new Headers(req.header);
      if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
        const deadline = createDeadlineSignal(options.timeoutMs);
        const linked = createLinkedAbortController(req.signal, deadline.signal);
        signal = linked.signal;
        cleanup = () => {
          deadline.cleanup();
          linked.abort();
        };
        header.set(GRPC_TIMEOUT, timeoutHeader(req.header.get(GRPC_TIMEOUT), options.timeoutMs));
      }
      try {
        return await next({ ...req, signal, header });
      } catch (caught) {
        if (caught instanceof GenChargeError) {
          // The credentials' own call failed (RefreshToken, IssueServiceToken): never
          // again from here, with a refresh token the server may have rotated already.
          throw caught;
        }
        let error = ConnectError.from(caught);
        if (signal.aborted && !req.signal.aborted) {
          // This attempt's own deadline (not the caller's): DEADLINE_EXCEEDED.
          error = new ConnectError(
            error.rawMessage,
            Code.DeadlineExceeded,
            error.metadata,
            undefined,
            error,
          );
        }
        if (req.signal.aborted) {
          throw error; // the caller cancelled, or the call's overall deadline passed
        }
        const delayMs = retryDelayMs(error, info, policy, attempt);
        if (delayMs === undefined) {
          throw error;
        }
        const message = req.message as unknown as Record<string, unknown>;
        await policy.onRetry?.({
          method: pathOf(req.method),
          attempt,
          error,
          delayMs,
          requestId: requestIdField ? (message[requestIdField] as string) : undefined,
        });
        await sleep(delayMs, req.signal);
      } finally {
        cleanup();
      }
    }
  };
}

/** Node's errors of a connection that went away under a call. */
const CONNECTION_ERRORS = new Set([
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_HTTP2_INVALID_STREAM",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_GOAWAY_SESSION",
]);

function nodeErrorCodes(error: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  for (let e = error; e instanceof Error && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") {
      codes.push(code);
    }
  }
  return codes;
}

/** A call that failed because its connection dropped (not because the caller or a
 * deadline aborted it, nor because the server answered so) as UNAVAILABLE. */
function lost(error: unknown, signal: AbortSignal): unknown {
  const connectError = ConnectError.from(error);
  if (signal.aborted) {
    return error;
  }
  const dropped =
    connectError.code === Code.Canceled ||
    ((connectError.code === Code.Aborted || connectError.code === Code.Internal) &&
      nodeErrorCodes(connectError).some((code) => CONNECTION_ERRORS.has(code)));
  if (!dropped) {
    return error;
  }
  return new ConnectError(
    `connection lost: ${connectError.rawMessage}`,
    Code.Unavailable,
    connectError.metadata,
    undefined,
    connectError,
  );
}

/** CANCELED or a connection reset that nobody asked for (a dropped connection) becomes
 * UNAVAILABLE. */
export function lostConnectionInterceptor(): Interceptor {
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) {
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (error) {
            throw lost(error, req.signal);
          }
        })(),
      };
    } catch (error) {
      throw lost(error, req.signal);
    }
  };
}

/** Whether an error says the access token expired (refresh and replay). */
export function isTokenExpired(error: ConnectError): boolean {
  if (error.code !== Code.Unauthenticated) {
    return false;
  }
  const { reason, metadata } = reasonOf(error);
  return reason === "INVALID_TOKEN" && metadata["cause"] === "expired";
}

/** Attaches the credentials' bearer token to every non-public call. */
export function authInterceptor(credentials: Credentials): Interceptor {
  return (next) => async (req) => {
    if (methodInfo(req.method)?.audience === "public") {
      return next(req);
    }
    const token = await credentials.accessToken(req.signal);
    req.header.set("authorization", `Bearer ${token}`);
    /** The server refused `token` as expired: renew the credentials (once for every
     * caller that sent it). True when a fresh token is ready. */
    const renewed = async (caught: unknown): Promise<boolean> =>
      isTokenExpired(ConnectError.from(caught)) && (await credentials.renew(token));
    if (req.stream && req.method.methodKind !== "server_streaming") {
      // Its requests cannot be sent again from here: renew, fail, and let the caller
      // open the stream again (batchRecharge does, resending its unanswered items).
      const fail = async (caught: unknown): Promise<never> => {
        await renewed(caught);
        throw caught;
      };
      let res: AnyStreamResponse;
      try {
        res = streamOf(await next(req));
      } catch (caught) {
        return fail(caught);
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (caught) {
            await fail(caught);
          }
        })(),
      };
    }
    if (req.stream) {
      // A server stream: replayed once with a fresh token if refused before its first
      // message (the request is one message, sent again as it was).
      const replay = await replayable(req);
      try {
        return await untilFirstMessage(await next(replay));
      } catch (caught) {
        if (!(await renewed(caught))) {
          throw caught;
        }
        const fresh = await credentials.accessToken(req.signal);
        replay.header.set("authorization", `Bearer ${fresh}`);
        return await next(replay);
      }
    }
    try {
      return await next(req);
    } catch (caught) {
      if (!(await renewed(caught))) {
        throw caught;
      }
      const fresh = await credentials.accessToken(req.signal);
      req.header.set("authorization", `Bearer ${fresh}`);
      return await next(req);
    }
  };
}
