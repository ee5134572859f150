// A small typed event emitter: the same in browsers and Node, and an
// "error" without a listener is not thrown (a game that does not listen for
// it still gets connect()'s rejection).

export type Listener<T> = (event: T) => void;

export class Emitter<Events extends object> {
  private listeners: { [K in keyof Events]?: Listener<Events[K]>[] } = {};

  /** Calls `listener` for every `name` event; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    (this.listeners[name] ??= []).push(listener);
    return () => this.off(name, listener);
  }

  /** Calls `listener` for the next `name` event only. */
  once<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(name, (event) => {
      off();
      listener(event);
    });
    return off;
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    const list = this.listeners[name];
    if (list === undefined) return;
    const at = list.indexOf(listener);
    if (at >= 0) list.splice(at, 1);
  }

  protected emit<K extends keyof Events>(name: K, event: Events[K]): void {
    // A copy: a listener may add or remove listeners.
    for (const listener of [...(this.listeners[name] ?? [])]) listener(event);
  }
}
