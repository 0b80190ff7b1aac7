// The client factory: one object exposing every service of the contract, typed.
//
//   const gc = createGenChargeClient({ baseUrl: "http://127.0.0.1:50051" });
//   const plans = await gc.plan.listPlans({});                 // a public call
//   const me = gc.withCredentials(await SessionCredentials.login(gc, {...}));
//   await me.recharge.recharge({...});                          // authenticated
//   for await (const txn of me.wallet.listTransactionsAll({})) { ... }
//
// Every method is Connect-ES's (same request and response types), behind the SDK's
// interceptors (src/interceptors.ts), and fails with a GenChargeError subclass.

import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  createClient,
  type CallOptions,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Credentials } from "./credentials.js";
import { toGenChargeError } from "./errors.js";
import {
  authInterceptor,
  lostConnectionInterceptor,
  requestIdInterceptor,
  retryInterceptor,
} from "./interceptors.js";
import { localName, methodInfo } from "./methods.js";
import { paginate } from "./pagination.js";
import type { RetryPolicy } from "./retry.js";
import { SERVICES, type Paginators } from "./gen/services.js";

/** Default deadline of each attempt of a unary call. */
export const DEFAULT_TIMEOUT_MS = 10_000;

export interface ClientOptions {
  /** The server, e.g. "http://127.0.0.1:50051" (plaintext HTTP/2) or "https://...". */
  baseUrl: string;
  /** Where bearer tokens come from; none for public calls only. */
  credentials?: Credentials;
  /** Overrides of the retry policy (src/retry.ts). */
  retry?: Partial<RetryPolicy>;
  /** Deadline of each attempt of a unary call, in ms (default 10 s; 0: none). Streams
   * have none unless a call passes `timeoutMs`. */
  timeoutMs?: number;
  /** More interceptors, run inside the SDK's (closest to the network). */
  interceptors?: Interceptor[];
}

type Services = typeof SERVICES;
type ServiceKey = keyof Services;

/** One client per service, plus the `<method>All` paginators of its List* RPCs. */
export type ServiceClients = {
  readonly [K in ServiceKey]: Client<Services[K]> & Paginators[K];
};

export type GenChargeClient = ServiceClients & {
  readonly options: Readonly<ClientOptions>;
  /** A client over the same connection whose calls carry these credentials. */
  withCredentials(credentials: Credentials): GenChargeClient;
  /** Close the connection (every client sharing it). */
  close(): void;
};

/** Create a client for every GenCharge service. */
export function createGenChargeClient(options: ClientOptions): GenChargeClient {
  const sessions = new Http2SessionManager(options.baseUrl);
  return build(options, sessions);
}

function build(options: ClientOptions, sessions: Http2SessionManager): GenChargeClient {
  const interceptors: Interceptor[] = [
    requestIdInterceptor(),
    retryInterceptor({ policy: options.retry, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS }),
  ];
  if (options.credentials) {
    interceptors.push(authInterceptor(options.credentials));
  }
  interceptors.push(...(options.interceptors ?? []), lostConnectionInterceptor());
  const transport = createGrpcTransport({
    baseUrl: options.baseUrl,
    sessionManager: sessions,
    interceptors,
  });
  const clients = {} as Record<string, unknown>;
  for (const [key, service] of Object.entries(SERVICES)) {
    clients[key] = serviceClient(service, transport);
  }
  return Object.assign(clients as ServiceClients, {
    options: Object.freeze({ ...options }),
    withCredentials(credentials: Credentials): GenChargeClient {
      return build({ ...options, credentials }, sessions);
    },
    close(): void {
      sessions.abort();
    },
  });
}

type AnyFn = (...args: unknown[]) => unknown;

/** Connect's client for one service, errors typed, plus its paginators. */
function serviceClient(service: DescService, transport: Transport): Record<string, AnyFn> {
  const raw = createClient(service, transport) as unknown as Record<string, AnyFn>;
  const out: Record<string, AnyFn> = {};
  for (const method of service.methods) {
    const fn = raw[method.localName]!;
    if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      out[method.localName] = async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (caught) {
          throw toGenChargeError(caught);
        }
      };
    } else {
      out[method.localName] = (...args: unknown[]) =>
        typedErrors(fn(...args) as AsyncIterable<unknown>);
    }
    const pagination = methodInfo(method)?.pagination;
    if (pagination) {
      out[`${method.localName}All`] = pager(method, out[method.localName]!, pagination.itemsField);
    }
  }
  return out;
}

function pager(method: DescMethod, fn: AnyFn, itemsField: string): AnyFn {
  const items = localName(method.output, itemsField);
  return (request?: unknown, options?: unknown) =>
    paginate(
      (req: Record<string, unknown>, opts?: CallOptions) =>
        fn(req, opts) as Promise<Record<string, unknown>>,
      items,
      (request ?? {}) as Record<string, unknown>,
      options as CallOptions | undefined,
    );
}

async function* typedErrors<T>(stream: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (caught) {
    throw toGenChargeError(caught);
  }
}
