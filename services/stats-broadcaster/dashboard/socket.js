// A WebSocket that reconnects by itself with backoff, resuming after the last seq seen.

import { askForKey, keyToSend } from './key.js';

/**
 * Opens `/v1/ws` and keeps it open. `first(lastSeq)` builds the subscribe message (the API
 * key is added to it), `onMessage` gets every parsed message and `onState` the connection
 * state (`open`, `reconnecting`, `finished`, `closed`, `unauthorized`).
 * Returns a function that stops it.
 */
export function keepConnected({ first, onMessage, onState }) {
  let lastSeq = 0;
  let attempt = 0;
  let stopped = false;
  let socket;
  let timer;

  const open = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/v1/ws`);
    socket.addEventListener('open', () => {
      attempt = 0;
      const token = keyToSend();
      socket.send(JSON.stringify(token ? { ...first(lastSeq), token } : first(lastSeq)));
      onState('open');
    });
    socket.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (typeof message.seq === 'number') {
        if (message.seq <= lastSeq) return;
        lastSeq = message.seq;
      }
      onMessage(message);
    });
    socket.addEventListener('close', (event) => {
      if (stopped) return;
      if (event.code === 1000) {
        onState('finished');
        return;
      }
      if (event.code === 4404 || event.code === 4400) {
        onState('closed', event.reason);
        return;
      }
      // No key, an unknown one, or one without the read scope: ask, then try again.
      if (event.code === 4401 || event.code === 4403) {
        onState('unauthorized', event.reason);
        askForKey(event.reason || 'This dashboard needs an API key with the read scope.', () => {
          attempt = 0;
          open();
        });
        return;
      }
      attempt += 1;
      const delay = Math.min(10000, 250 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
      onState('reconnecting');
      timer = setTimeout(open, delay);
    });
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (socket) socket.close(1000, 'leaving');
  };
}
