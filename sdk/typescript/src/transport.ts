// The WebSocket under the client: the browser's own, Node's own (Node >= 22),
// or the `ws` package (Node 18 and 20, and wherever TLS options are needed).

/** What the client uses of a WebSocket; the browser's, Node's and `ws`'s all have it. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

/**
 * Options for the `ws` package in Node (TLS: `ca`, `servername`,
 * `rejectUnauthorized`; `headers`, `origin`, ...), passed as they are. With
 * them the client always uses `ws`, which alone takes them.
 */
export type NodeWebSocketOptions = Record<string, unknown>;

type WebSocketConstructor = new (url: string, ...rest: never[]) => WebSocketLike;

export async function webSocketFactory(nodeOptions?: NodeWebSocketOptions): Promise<WebSocketFactory> {
  const native = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (native !== undefined && nodeOptions === undefined) return (url) => new native(url);
  // The bundle for browsers leaves this import out (esbuild --external:ws):
  // a browser always has its own WebSocket above.
  const ws = (await import("ws")).default as unknown as new (
    url: string,
    protocols: undefined,
    options: NodeWebSocketOptions,
  ) => WebSocketLike;
  // No permessage-deflate: the gateway does not offer it (docs/websocket.md).
  return (url) => new ws(url, undefined, { perMessageDeflate: false, ...nodeOptions });
}

/** The bytes of a binary message, whichever WebSocket delivered it. */
export function messageBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;  // text (or a Blob: binaryType is set to "arraybuffer")
}
