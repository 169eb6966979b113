// The API key the dashboard watches with: the gateway's keys, read scope. It is kept in
// sessionStorage (gone with the tab) and sent only inside the WebSocket's first message,
// never in a URL that proxies would log. `#key=<key>` (what `cargo xtask up` prints) is taken
// once and removed from the address bar.

const STORAGE = 'quizstats-api-key';

export function takeKeyFromLocation() {
  const match = location.hash.match(/^#key=([^&]+)/);
  if (!match) return;
  saveKey(decodeURIComponent(match[1]));
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
}

export function currentKey() {
  try {
    return sessionStorage.getItem(STORAGE) || '';
  } catch {
    return '';
  }
}

export function saveKey(key) {
  try {
    if (key) sessionStorage.setItem(STORAGE, key);
    else sessionStorage.removeItem(STORAGE);
  } catch {
    // Storage disabled: the key lasts as long as this page.
  }
  memory = key;
}

let memory = '';

/** The key to send: stored, or the one typed into a page whose storage is disabled. */
export function keyToSend() {
  return currentKey() || memory;
}

/** Shows the key form with why it is needed; `onKey` runs once a key is entered. */
export function askForKey(reason, onKey) {
  const form = document.getElementById('key-form');
  const input = document.getElementById('key-input');
  document.getElementById('key-reason').textContent = reason;
  form.hidden = false;
  input.focus();
  form.onsubmit = (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    saveKey(key);
    input.value = '';
    form.hidden = true;
    onKey();
  };
}
