// The app shell, kept so the page opens while the box is reachable but the
// internet is not, or when the box restarts. Network first (a box update
// shows at once), the cached copy when the network fails. API calls are never
// cached: stale balances or an old island state would mislead.
const CACHE = "peergrid-shell-v1";
const SHELL = ["/", "/app.js", "/app.css", "/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k)))).then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return;
  // Kept and found by path alone: "/?from=home" is the same page, and must not miss the cache offline
  // (nor add an entry per query string).
  event.respondWith(
    fetch(event.request)
      .then((res) => {
        if (res.ok) {
          const copy = res.clone();
          event.waitUntil(caches.open(CACHE).then((c) => c.put(url.pathname, copy)));
        }
        return res;
      })
      .catch(() => caches.match(url.pathname, { cacheName: CACHE }).then((hit) => hit ?? Response.error())),
  );
});
