// A WebSocket that reconnects by itself with backoff, resuming after the last seq seen.

/**
 * Opens `/v1/ws` and keeps it open. `query(lastSeq)` builds the query string,
 * `first` is an optional first message, `onMessage` gets every parsed message and
 * `onState` the connection state (`open`, `reconnecting`, `finished`, `closed`).
 * Returns a function that stops it.
 */
export function keepConnected({ query, first, onMessage, onState }) {
  let lastSeq = 0;
  let attempt = 0;
  let stopped = false;
  let socket;
  let timer;

  const open = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/v1/ws${query(lastSeq)}`);
    socket.addEventListener('open', () => {
      attempt = 0;
      if (first) socket.send(JSON.stringify(first));
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
