// Local OIDC issuer with Keycloak-style URLs, standing in for Keycloak in development and tests.
//
//   {issuer}/.well-known/openid-configuration
//   {issuer}/protocol/openid-connect/certs               JWKS
//   {issuer}/protocol/openid-connect/token               client_credentials grant
//   {issuer}/protocol/openid-connect/token/introspect    RFC 7662
//
// issuer = http://HOST:PORT/realms/REALM. Clients, their secrets, scopes and merchant ids come
// from clients.json; the RS256 signing key is kept in KEY_FILE so that its `kid` stays stable
// across restarts. GET /_stats counts the tokens issued and the introspections answered.

import { createServer } from 'node:http';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomUUID, timingSafeEqual, createPrivateKey, createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, exportJWK, importJWK, SignJWT, jwtVerify, calculateJwkThumbprint } from 'jose';

const here = dirname(fileURLToPath(import.meta.url));
const host = process.env.OIDC_HOST ?? '127.0.0.1';
const port = Number(process.env.OIDC_PORT ?? 8080);
const config = JSON.parse(readFileSync(process.env.OIDC_CLIENTS ?? join(here, 'clients.json'), 'utf8'));
const keyFile = process.env.OIDC_KEY_FILE ?? join(here, '.signing-key.json');
const issuer = `http://${host}:${port}/realms/${config.realm}`;
const base = `/realms/${config.realm}`;
const stats = { tokens: 0, introspections: 0 };
// Introspections per token (by SHA-256 hex of the token), so tests can see cache hits.
const introspectionsByToken = new Map();

async function loadKey() {
  if (existsSync(keyFile)) {
    const jwk = JSON.parse(readFileSync(keyFile, 'utf8'));
    return { jwk, key: await importJWK(jwk, 'RS256') };
  }
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = 'RS256';
  jwk.use = 'sig';
  mkdirSync(dirname(keyFile), { recursive: true });
  writeFileSync(keyFile, JSON.stringify(jwk), { mode: 0o600 });
  return { jwk, key: await importJWK(jwk, 'RS256') };
}

const { jwk: privateJwk, key: signingKey } = await loadKey();
// The same key as PKCS#8 PEM beside the JWK, for tests that must craft tokens the issuer would
// never issue (expired, wrong audience, ...) yet correctly signed.
writeFileSync(
  keyFile.replace(/\.json$/, '') + '.pem',
  createPrivateKey({ key: privateJwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' }),
  { mode: 0o600 },
);
const publicJwk = { kty: privateJwk.kty, n: privateJwk.n, e: privateJwk.e, kid: privateJwk.kid, alg: 'RS256', use: 'sig' };
const publicKey = await importJWK(publicJwk, 'RS256');

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 64 * 1024) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function safeEqual(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

// Client authentication: HTTP Basic (client_secret_basic) or form fields (client_secret_post).
function authenticateClient(req, form) {
  let id = form.get('client_id');
  let secret = form.get('client_secret');
  const header = req.headers.authorization ?? '';
  if (header.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const sep = decoded.indexOf(':');
    if (sep >= 0) {
      id = decodeURIComponent(decoded.slice(0, sep));
      secret = decodeURIComponent(decoded.slice(sep + 1));
    }
  }
  const client = id ? config.clients[id] : undefined;
  if (!client || !secret || !safeEqual(secret, client.secret)) return null;
  return { id, ...client };
}

async function issueToken(client, requestedScope) {
  const allowed = (client.scope ?? '').split(/\s+/).filter(Boolean);
  let scope = allowed;
  if (requestedScope) {
    const wanted = requestedScope.split(/\s+/).filter(Boolean).filter((s) => s !== 'openid');
    const unknown = wanted.filter((s) => !allowed.includes(s));
    if (unknown.length) return { error: 'invalid_scope', error_description: `Invalid scopes: ${unknown.join(' ')}` };
    scope = wanted;
  }
  const lifespan = config.accessTokenLifespanSeconds ?? 300;
  const claims = {
    typ: 'Bearer',
    azp: client.id,
    client_id: client.id,
    scope: scope.join(' '),
  };
  if (client.merchant_id) claims.merchant_id = client.merchant_id;
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: privateJwk.kid })
    .setIssuer(issuer)
    .setSubject(`service-account-${client.id}`)
    .setAudience(config.audience)
    .setIssuedAt()
    .setExpirationTime(`${lifespan}s`)
    .setJti(randomUUID())
    .sign(signingKey);
  stats.tokens += 1;
  return { access_token: token, expires_in: lifespan, token_type: 'Bearer', scope: claims.scope, 'not-before-policy': 0 };
}

async function introspect(token) {
  stats.introspections += 1;
  const fingerprint = createHash('sha256').update(token).digest('hex');
  introspectionsByToken.set(fingerprint, (introspectionsByToken.get(fingerprint) ?? 0) + 1);
  try {
    const { payload } = await jwtVerify(token, publicKey, { issuer, algorithms: ['RS256'] });
    return { active: true, token_type: 'Bearer', ...payload };
  } catch {
    return { active: false };
  }
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const path = url.pathname;
    if (req.method === 'GET' && path === `${base}/.well-known/openid-configuration`) {
      return send(res, 200, {
        issuer,
        token_endpoint: `${issuer}/protocol/openid-connect/token`,
        introspection_endpoint: `${issuer}/protocol/openid-connect/token/introspect`,
        jwks_uri: `${issuer}/protocol/openid-connect/certs`,
        grant_types_supported: ['client_credentials'],
        response_types_supported: ['token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      });
    }
    if (req.method === 'GET' && path === `${base}/protocol/openid-connect/certs`) {
      return send(res, 200, { keys: [publicJwk] });
    }
    if (req.method === 'POST' && path === `${base}/protocol/openid-connect/token`) {
      const form = new URLSearchParams(await readBody(req));
      const client = authenticateClient(req, form);
      if (!client) return send(res, 401, { error: 'invalid_client', error_description: 'Invalid client or Invalid client credentials' });
      if (form.get('grant_type') !== 'client_credentials') {
        return send(res, 400, { error: 'unsupported_grant_type', error_description: 'Only client_credentials is supported' });
      }
      const answer = await issueToken(client, form.get('scope'));
      return send(res, answer.error ? 400 : 200, answer);
    }
    if (req.method === 'POST' && path === `${base}/protocol/openid-connect/token/introspect`) {
      const form = new URLSearchParams(await readBody(req));
      const client = authenticateClient(req, form);
      if (!client) return send(res, 401, { error: 'invalid_client', error_description: 'Authentication failed' });
      const token = form.get('token');
      if (!token) return send(res, 400, { error: 'invalid_request', error_description: 'token is required' });
      return send(res, 200, await introspect(token));
    }
    if (req.method === 'GET' && path === '/_stats') {
      const token = url.searchParams.get('token_sha256');
      return send(res, 200, token ? { ...stats, token: introspectionsByToken.get(token) ?? 0 } : stats);
    }
    if (req.method === 'GET' && path === '/health') return send(res, 200, { status: 'UP' });
    return send(res, 404, { error: 'not_found' });
  } catch (e) {
    return send(res, 500, { error: 'server_error', error_description: String(e?.message ?? e) });
  }
});

server.listen(port, host, () => {
  console.log(`issuer ${issuer} ready (kid ${privateJwk.kid})`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
