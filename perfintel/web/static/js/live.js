// The WebSocket stream: one connection, re-subscribed by the page that is showing.
import { streamUrl } from "./api.js";

class LiveStream {
  constructor() {
    this.ws = null;
    this.spec = null;
    this.handlers = new Set();
    this.backoff = 500;
    this.status = document.getElementById("live-status");
  }

  subscribe(topics, selectors, handler) {
    this.spec = { topics, selectors };
    this.handlers = new Set([handler]);
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.ready) this.send();
    else this.connect();
  }

  unsubscribe() {
    this.handlers.clear();
    this.spec = null;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ subscribe: { topics: ["health"], selectors: [] } }));
  }

  send() {
    if (this.spec) this.ws.send(JSON.stringify({ subscribe: this.spec }));
  }

  setStatus(on, text) {
    if (!this.status) return;
    this.status.textContent = text;
    this.status.classList.toggle("on", on);
  }

  connect() {
    if (this.ws && (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN)) return;
    this.ready = false;
    const ws = new WebSocket(streamUrl());
    this.ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "ready") { this.ready = true; this.backoff = 500; this.setStatus(true, "live"); this.send(); return; }
      for (const h of this.handlers) h(msg);
    };
    ws.onclose = () => {
      this.ready = false;
      this.setStatus(false, "offline");
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(15000, this.backoff * 2);
    };
  }
}

export const live = new LiveStream();
