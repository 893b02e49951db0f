// Serves the neighbours' web app (web/) from the box, on the same origin as
// the API: index.html at "/", the bundle (web/dist/app.js, built by
// scripts/build-web.mjs), the stylesheet, the service worker and the
// manifest. A handful of explicit routes rather than a static-file plugin:
// the set of files is fixed, read once at registration, and each gets its own
// content type and headers.
//
// Every response carries a Content-Security-Policy that allows the box's own
// origin only: the page cannot load a font, script or style from the
// internet even by mistake (the app must work with no internet), nor send
// data anywhere but its box; and Trusted Types, so that no string can
// become markup or script even if a later change reaches for innerHTML (the
// page builds its elements with textContent; its one policy, "peergrid",
// passes the service worker's URL and nothing else). Caching: "no-cache" with an ETag, so a phone
// revalidates (a 304, a few bytes on the LAN) and an updated box shows at
// once; the service worker (web/sw.js) keeps the shell for when it cannot.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self'",
  "manifest-src 'self'",
  "font-src 'none'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types peergrid",
].join("; ");

/** If-None-Match holds `etag` (it may list several, or mark them weak). */
function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  return ifNoneMatch !== undefined && ifNoneMatch.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}

/** The files served: URL path, file under web/, content type. */
const FILES = [
  { url: "/", file: "index.html", type: "text/html; charset=utf-8" },
  { url: "/index.html", file: "index.html", type: "text/html; charset=utf-8" },
  { url: "/app.js", file: "dist/app.js", type: "text/javascript; charset=utf-8" },
  { url: "/app.css", file: "app.css", type: "text/css; charset=utf-8" },
  { url: "/sw.js", file: "sw.js", type: "text/javascript; charset=utf-8" },
  { url: "/manifest.webmanifest", file: "manifest.webmanifest", type: "application/manifest+json; charset=utf-8" },
] as const;

export interface WebAppOptions {
  /** The web/ folder; found from this module's place (source or dist/) when not given. */
  readonly root?: string;
}

/** The web/ folder: beside daemon/ in the source tree, two levels up from dist/daemon/. */
export function findWebRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [join(here, "..", "web"), join(here, "..", "..", "web")]) {
    if (existsSync(join(candidate, "index.html"))) return candidate;
  }
  throw new Error(`no web/index.html found above ${here}`);
}

/** Serve the web app on `app` (call before listen). A bundle not built yet answers 503 with how to build it. */
export async function registerWebApp(app: FastifyInstance, options: WebAppOptions = {}): Promise<void> {
  const root = options.root ?? findWebRoot();
  for (const f of FILES) {
    const path = join(root, f.file);
    const body = existsSync(path) ? readFileSync(path) : null;
    const etag = body === null ? "" : `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    app.get(f.url, async (req: FastifyRequest, reply: FastifyReply) => {
      reply.header("content-security-policy", CSP).header("x-content-type-options", "nosniff").header("referrer-policy", "no-referrer");
      if (body === null) {
        return reply.status(503).send({ statusCode: 503, code: "PG_ERR_WEB_NOT_BUILT", message: `${f.file} is missing: run npm run build:web` });
      }
      reply.header("cache-control", "no-cache").header("etag", etag);
      if (f.file === "sw.js") reply.header("service-worker-allowed", "/");
      if (matches(req.headers["if-none-match"], etag)) return reply.status(304).send();
      return reply.type(f.type).send(body);
    });
  }
}
