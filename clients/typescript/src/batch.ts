// batchRecharge: drive RechargeService.BatchRecharge (bidirectional stream, service
// accounts) from any iterable of items, and yield one result per item, in input order.
//
// - Each item gets its request_id once (its own, or a UUID4) and keeps it: a resent
//   item carries the same id, so the server answers it with its original result.
// - At most `maxInFlight` items are between "read from the input" and "yielded"
//   (default 64): the input is read lazily, and a slow consumer slows the stream.
// - If the stream breaks (UNAVAILABLE: connection lost, server restarting), a new stream
//   is opened and every unanswered item is sent again, in order, with its request_id:
//   a dropped connection never debits twice.
// - An item answered FAILED_PRECONDITION IN_PROGRESS (its request_id is still running,
//   e.g. on the stream that broke) is sent again after a jittered backoff.
// - A stream the server refuses or ends as UNAUTHENTICATED because the access token
//   expired is opened again once, with the credentials renewed (the auth interceptor
//   renews them, one renewal for every caller), the unanswered items resent with their
//   request_ids; the same refusal again, before any answer, throws (TokenExpired).
// - Other item errors are results (typed GenChargeErrors), never exceptions; a stream
//   error other than a lost connection (e.g. PERMISSION_DENIED MISSING_SCOPE) throws.

import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, type CallOptions } from "@connectrpc/connect";
import {
  BatchRechargeRequestSchema,
  type BatchRechargeRequest,
  type BatchRechargeResponse,
  type Recharge,
} from "./gen/gencharge/v1/recharge_service_pb.js";
import {
  fromStatus,
  toGenChargeError,
  GenChargeError,
  InProgress,
  TokenExpired,
  Unavailable,
} from "./errors.js";
import { backoffMs, DEFAULT_RETRY_POLICY, sleep, type RetryPolicy } from "./retry.js";

/** One recharge of a batch: a BatchRechargeRequest (request_id optional). */
export type BatchItem = MessageInitShape<typeof BatchRechargeRequestSchema>;

export interface BatchResult<T extends BatchItem = BatchItem> {
  /** The item's position in the input (0-based). */
  readonly index: number;
  /** The item as given. */
  readonly item: T;
  /** The request_id it was sent with (the same on every resend). */
  readonly requestId: string;
  /** The recharge, when the item succeeded. */
  readonly recharge?: Recharge;
  /** The item's typed error, when it failed. */
  readonly error?: GenChargeError;
}

export interface BatchProgress {
  /** Items yielded so far. */
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Items read from the input and not yielded yet. */
  readonly inFlight: number;
  /** Streams reopened after a lost connection. */
  readonly reconnects: number;
}

export interface BatchOptions {
  /** Items read from the input but not yet yielded, at most. Default 64. */
  maxInFlight?: number;
  /** Called after each yielded result. */
  onProgress?: (progress: BatchProgress) => void;
  /** Streams reopened in a row without an answer in between before giving up. Default 5. */
  maxReconnects?: number;
  /** Times an IN_PROGRESS item is sent again before it is a failed result. Default 8. */
  maxInProgressRetries?: number;
  /** Backoff between reconnects and IN_PROGRESS resends (initialBackoffMs,
   * maxBackoffMs, random of the retry policy). */
  backoff?: Partial<Pick<RetryPolicy, "initialBackoffMs" | "maxBackoffMs" | "random">>;
  /** Cancels the batch (the stream, and the generator with it). */
  signal?: AbortSignal;
}

/** The part of a client batchRecharge needs (a GenChargeClient fits). */
export interface BatchClient {
  readonly recharge: {
    batchRecharge(
      requests: AsyncIterable<MessageInitShape<typeof BatchRechargeRequestSchema>>,
      options?: CallOptions,
    ): AsyncIterable<BatchRechargeResponse>;
  };
}

interface Entry<T extends BatchItem> {
  readonly index: number;
  readonly item: T;
  readonly request: BatchRechargeRequest;
  state: "queued" | "sent" | "waiting" | "done";
  inProgressRetries: number;
  recharge?: Recharge;
  error?: GenChargeError;
}

/** Errors after which the stream is reopened and the unanswered items resent. */
function isLostStream(error: GenChargeError): boolean {
  return error.code === Code.Unavailable || error.code === Code.DeadlineExceeded;
}

/** Recharge every item over BatchRecharge; yields `{index, item, requestId, recharge |
 * error}` in input order (see the module comment). */
export async function* batchRecharge<T extends BatchItem>(
  client: BatchClient,
  items: Iterable<T> | AsyncIterable<T>,
  options: BatchOptions = {},
): AsyncGenerator<BatchResult<T>, void, undefined> {
  const maxInFlight = Math.max(1, options.maxInFlight ?? 64);
  const maxReconnects = options.maxReconnects ?? 5;
  const maxInProgressRetries = options.maxInProgressRetries ?? 8;
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.backoff };
  const input: AsyncIterator<T> | Iterator<T> =
    Symbol.asyncIterator in items
      ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
      : (items as Iterable<T>)[Symbol.iterator]();

  /** Read from the input, not yet yielded, in input order. */
  const pending: Entry<T>[] = [];
  /** To send (first sends and resends), in input order. */
  let queue: Entry<T>[] = [];
  /** Sent on the current stream and not answered yet, in send order. */
  let sent: Entry<T>[] = [];
  let inputDone = false;
  let inputError: unknown = undefined;
  let nextIndex = 0;
  let waiting = 0; // IN_PROGRESS items waiting for their backoff
  let counts = { done: 0, succeeded: 0, failed: 0, reconnects: 0 };
  let wake: () => void = () => {};
  const timers = new Set<NodeJS.Timeout>();

  const enqueue = (entry: Entry<T>): void => {
    entry.state = "queued";
    // Keep input order: resends go before anything read later.
    let at = queue.length;
    while (at > 0 && queue[at - 1]!.index > entry.index) {
      at--;
    }
    queue.splice(at, 0, entry);
  };

  const finished = (): boolean =>
    inputDone && pending.length === 0 && queue.length === 0 && waiting === 0;

  try {
    let failuresInARow = 0;
    /** The credentials were renewed after an expired-token refusal, with no answer since. */
    let renewed = false;
    while (!finished()) {
      options.signal?.throwIfAborted();
      const controller = new AbortController();
      const onAbort = (): void => controller.abort(options.signal?.reason);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      let broken = false;
      sent = [];

      // The request side: queued items first, then new input while there is room;
      // half-closed once nothing is left to send and nothing may come back to resend.
      const requests = async function* (): AsyncGenerator<BatchRechargeRequest> {
        for (;;) {
          if (broken) {
            return;
          }
          const next = queue.shift();
          if (next !== undefined) {
            next.state = "sent";
            sent.push(next);
            yield next.request;
            continue;
          }
          if (!inputDone && pending.length < maxInFlight) {
            let step: IteratorResult<T>;
            try {
              step = await input.next();
            } catch (error) {
              inputError = error;
              inputDone = true;
              controller.abort(error);
              return;
            }
            if (step.done) {
              inputDone = true;
              continue;
            }
            const item = step.value;
            const request = create(BatchRechargeRequestSchema, {
              ...item,
              requestId: item.requestId || randomUUID(),
            });
            const entry: Entry<T> = {
              index: nextIndex++,
              item,
              request,
              state: "queued",
              inProgressRetries: 0,
            };
            pending.push(entry);
            queue.push(entry);
            continue;
          }
          if (inputDone && waiting === 0) {
            return; // half-close: every item is sent or answered
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      };

      let streamError: GenChargeError | undefined;
      let expired = false;
      try {
        const responses = client.recharge.batchRecharge(requests(), { signal: controller.signal });
        for await (const response of responses) {
          const entry = sent.shift();
          if (
            entry === undefined ||
            (response.requestId && response.requestId !== entry.request.requestId)
          ) {
            throw new GenChargeError({
              code: Code.Internal,
              message: "BatchRecharge answered out of order",
              requestId: entry?.request.requestId,
            });
          }
          failuresInARow = 0;
          renewed = false;
          settle(entry, response);
          wake();
          while (pending[0]?.state === "done") {
            const done = pending.shift()!;
            counts = {
              ...counts,
              done: counts.done + 1,
              succeeded: counts.succeeded + (done.error ? 0 : 1),
              failed: counts.failed + (done.error ? 1 : 0),
            };
            yield result(done);
            options.onProgress?.({ ...counts, inFlight: pending.length });
          }
        }
      } catch (caught) {
        if (inputError !== undefined) {
          throw inputError;
        }
        options.signal?.throwIfAborted();
        streamError = toGenChargeError(caught);
        expired = streamError instanceof TokenExpired && !renewed;
        if (!isLostStream(streamError) && !expired) {
          throw streamError;
        }
      } finally {
        broken = true;
        wake();
        options.signal?.removeEventListener("abort", onAbort);
        controller.abort();
      }
      if (inputError !== undefined) {
        throw inputError;
      }
      if (streamError === undefined && sent.length > 0) {
        // The server ended the stream without answering everything: as a lost stream.
        streamError = new Unavailable({
          code: Code.Unavailable,
          message: `BatchRecharge ended with ${sent.length} items unanswered`,
        });
      }
      // Whatever was sent and not answered goes again, with its request_id.
      for (const entry of sent) {
        enqueue(entry);
      }
      sent = [];
      if (expired) {
        // A fresh token is ready (the auth interceptor renewed it): reopen at once.
        renewed = true;
        counts = { ...counts, reconnects: counts.reconnects + 1 };
      } else if (streamError !== undefined) {
        failuresInARow++;
        if (failuresInARow > maxReconnects) {
          throw streamError;
        }
        counts = { ...counts, reconnects: counts.reconnects + 1 };
        await sleep(backoffMs(policy, failuresInARow), options.signal);
      }
    }
  } finally {
    for (const timer of timers) {
      clearTimeout(timer);
    }
  }

  function settle(entry: Entry<T>, response: BatchRechargeResponse): void {
    if (response.result.case === "recharge") {
      entry.recharge = response.result.value;
      entry.state = "done";
      return;
    }
    const error =
      response.result.case === "error"
        ? fromStatus(response.result.value, {
            requestId: entry.request.requestId,
            method: "/gencharge.v1.RechargeService/BatchRecharge",
          })
        : new GenChargeError({ code: Code.Internal, message: "empty BatchRecharge result" });
    if (error instanceof InProgress && entry.inProgressRetries < maxInProgressRetries) {
      entry.inProgressRetries++;
      entry.state = "waiting";
      waiting++;
      const timer = setTimeout(
        () => {
          timers.delete(timer);
          waiting--;
          enqueue(entry);
          wake();
        },
        backoffMs(policy, entry.inProgressRetries),
      );
      timers.add(timer);
      return;
    }
    entry.error = error;
    entry.state = "done";
  }

  function result(entry: Entry<T>): BatchResult<T> {
    return {
      index: entry.index,
      item: entry.item,
      requestId: entry.request.requestId,
      ...(entry.recharge ? { recharge: entry.recharge } : {}),
      ...(entry.error ? { error: entry.error } : {}),
    };
  }
}
