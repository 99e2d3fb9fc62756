// The APNs provider API on loopback for the benchmark's throughput runs, on Node.js 20.
//
// tests/peers/apns.py is the APNs peer of the tests: it scripts errors, stalls and dropped
// connections and records every push for a test to read. Its HTTP/2 is the pure-Python `h2`,
// about 0.4 ms of CPU per request: a core at 2,300 pushes/s, on a 2-core machine whose other
// core the bench's workers need. This peer is for throughput only: Node's http2 module is
// nghttp2, in C (0.08 to 0.17 ms per push), so what a bench measures against it is the
// client's figure, not the peer's. It makes the SAME checks as the Python peer does of the
// bench's pushes, and answers as it does:
//   - `authorization: bearer <JWT>`: ES256 signature checked with crypto.verify (the JWT's
//     signature is r || s, dsaEncoding 'ieee-p1363') against the public half of the provider
//     key, `kid` the key id, `iss` the team id, `iat` a whole number; a token is checked once
//     and cached by its text, as APNs does. Older than an hour: 403 ExpiredProviderToken;
//     anything else wrong: 403 InvalidProviderToken (no token: MissingProviderToken).
//   - `apns-topic` (else 400 MissingTopic / TopicDisallowed), `apns-push-type`,
//     `apns-priority`, `apns-expiration` (digits) and `apns-id` (a lower-case UUID).
//   - POST /3/device/<token>, the token 64 hex digits after the bench's prefix (else 400
//     BadDeviceToken); the payload at most 4096 bytes (else 413 PayloadTooLarge) and a
//     non-empty JSON object (else 400 PayloadEmpty).
//   - an accepted push: 200 with its apns-id echoed.
// No scripted errors and no record of each push: the bench counts, it does not inspect.
//
// The Python side makes the TLS files and the provider key (tests/peers/apns.py,
// node_peer_files_write) and starts it (bench/apns.py):
//   node tests/peers/apns_node.js --cert server.pem --key server-key.pem --ca ca.pem \
//     --provider-key provider.p8 --key-id KEYID --team-id TEAMID --topic club.engage.app \
//     --token-prefix bench-push: --settings-out gateway.json [--host 127.0.0.1] [--port 0]
// Once it listens it writes the gateway settings to --settings-out (whole, then renamed, as
// tests/peers/aiohttp_peer.serve_main does), with `stats_url`, a plain-HTTP side port serving
// GET /_peer/stats: accepted, requests, connections, pushing_connections, provider_tokens and
// most_unanswered (the most streams one connection had waiting for their reply at once).
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');

const PAYLOAD_LIMIT = 4096;
const PROVIDER_TOKEN_LIFETIME = 3600;
const PUSH_TYPES = new Set(['alert', 'background', 'location', 'voip', 'complication',
  'fileprovider', 'mdm', 'liveactivity', 'pushtotalk']);
const TOKEN_FORMAT = /^[0-9a-fA-F]{64}$/;
const UUID_FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DEVICE_PATH = '/3/device/';

function options(argv) {
  const given = {host: '127.0.0.1', port: '0', 'token-prefix': ''};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`expected --name value pairs, got ${argv[i]}`);
    }
    given[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ['cert', 'key', 'ca', 'provider-key', 'key-id', 'team-id', 'topic',
    'settings-out']) {
    if (!given[name]) throw new Error(`--${name} is required`);
  }
  return given;
}

const args = options(process.argv.slice(2));
const providerKeyPem = fs.readFileSync(args['provider-key'], 'utf8');
const publicKey = crypto.createPublicKey(providerKeyPem);
const stats = {accepted: 0, requests: 0, connections: 0, pushing_connections: 0,
  provider_tokens: 0, most_unanswered: 0};
const verified = new Map(); // JWT -> its iat, once its signature checked out

function decodePart(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// The JWT's iat when it is the provider's, else null.
function verifiedIat(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  let header;
  let claims;
  try {
    header = decodePart(parts[0]);
    claims = decodePart(parts[1]);
  } catch {
    return null;
  }
  if (header === null || claims === null || header.alg !== 'ES256' ||
      header.kid !== args['key-id'] || claims.iss !== args['team-id'] ||
      !Number.isInteger(claims.iat) || claims.iat > Date.now() / 1000 + 60) {
    return null;
  }
  const signed = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`),
    {key: publicKey, dsaEncoding: 'ieee-p1363'}, Buffer.from(parts[2], 'base64url'));
  return signed ? claims.iat : null;
}

function providerTokenProblem(authorization) {
  const space = (authorization || '').indexOf(' ');
  const scheme = space < 0 ? authorization || '' : authorization.slice(0, space);
  const token = space < 0 ? '' : authorization.slice(space + 1);
  if (scheme.toLowerCase() !== 'bearer' || !token) return 'MissingProviderToken';
  let issued = verified.get(token);
  if (issued === undefined) {
    issued = verifiedIat(token);
    if (issued === null) return 'InvalidProviderToken';
    verified.set(token, issued);
    stats.provider_tokens = verified.size;
  }
  return issued < Date.now() / 1000 - PROVIDER_TOKEN_LIFETIME ? 'ExpiredProviderToken' : '';
}

function headerProblem(headers) {
  const topic = headers['apns-topic'];
  if (!topic) return 'MissingTopic';
  if (topic !== args.topic) return 'TopicDisallowed';
  if (!PUSH_TYPES.has(headers['apns-push-type'] ?? 'alert')) return 'InvalidPushType';
  if (!['1', '5', '10'].includes(headers['apns-priority'] ?? '10')) return 'BadPriority';
  if (!/^\d+$/.test(headers['apns-expiration'] ?? '0')) return 'BadExpirationDate';
  if ('apns-id' in headers && !UUID_FORMAT.test(headers['apns-id'])) return 'BadMessageId';
  return '';
}

function wellFormed(token) {
  const prefix = args['token-prefix'];
  return TOKEN_FORMAT.test(prefix && token.startsWith(prefix) ? token.slice(prefix.length)
    : token);
}

// [status, reason] for one request; reason '' when accepted.
function answer(headers, body) {
  const path = headers[':path'] || '';
  if (headers[':method'] !== 'POST') return [405, 'MethodNotAllowed'];
  if (!path.startsWith(DEVICE_PATH)) return [404, 'BadPath'];
  let reason = providerTokenProblem(headers.authorization);
  if (reason) return [403, reason];
  reason = headerProblem(headers);
  if (reason) return [400, reason];
  const token = path.slice(DEVICE_PATH.length);
  if (!token) return [400, 'MissingDeviceToken'];
  if (!wellFormed(token)) return [400, 'BadDeviceToken'];
  if (body.length > PAYLOAD_LIMIT) return [413, 'PayloadTooLarge'];
  let payload = null;
  try {
    payload = JSON.parse(body.toString('utf8'));
  } catch {
    payload = null;
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload) ||
      Object.keys(payload).length === 0) {
    return [400, 'PayloadEmpty'];
  }
  return [200, ''];
}

const server = http2.createSecureServer({
  cert: fs.readFileSync(args.cert),
  key: fs.readFileSync(args.key),
  allowHTTP1: false,
  // APNs lets a connection carry many streams at once; 1000 is what it advertises.
  settings: {maxConcurrentStreams: 1000},
  // nghttp2's default 10 MB per session refuses streams under a burst of 1000 in flight.
  maxSessionMemory: 64,
});

server.on('session', (session) => {
  stats.connections += 1;
  session.unanswered = 0;
  session.pushed = false;
  session.on('error', () => {});
});

server.on('stream', (stream, headers) => {
  const session = stream.session;
  stats.requests += 1;
  session.unanswered += 1;
  if (session.unanswered > stats.most_unanswered) stats.most_unanswered = session.unanswered;
  const chunks = [];
  stream.on('data', (chunk) => chunks.push(chunk));
  stream.on('error', () => {});
  stream.on('end', () => {
    session.unanswered -= 1;
    const apnsId = headers['apns-id'] || crypto.randomUUID();
    const [status, reason] = answer(headers, chunks.length === 1 ? chunks[0]
      : Buffer.concat(chunks));
    if (stream.destroyed) return;
    if (status === 200) {
      stats.accepted += 1;
      if (!session.pushed) {
        session.pushed = true;
        stats.pushing_connections += 1;
      }
      stream.respond({':status': 200, 'apns-id': apnsId}, {endStream: true});
      return;
    }
    stream.respond({':status': status, 'apns-id': apnsId,
      'content-type': 'application/json'});
    stream.end(JSON.stringify({reason}));
  });
});

const statsServer = http.createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/_peer/stats') {
    response.writeHead(200, {'content-type': 'application/json'});
    response.end(JSON.stringify(stats));
    return;
  }
  response.writeHead(404);
  response.end();
});

function listening(what, port) {
  return new Promise((resolve, reject) => {
    what.once('error', reject);
    what.listen(port, args.host, 1024, () => resolve(what.address().port));
  });
}

async function main() {
  const port = await listening(server, Number(args.port));
  const statsPort = await listening(statsServer, 0);
  const settings = {
    team_id: args['team-id'], key_id: args['key-id'], private_key: providerKeyPem,
    topic: args.topic, endpoint: `https://${args.host}:${port}`, ca_file: args.ca,
    timeout: 5, connect_timeout: 2, stats_url: `http://${args.host}:${statsPort}`,
  };
  const out = args['settings-out'];
  const partial = out.replace(/\.json$/, '') + '.partial';
  fs.writeFileSync(partial, JSON.stringify(settings));
  fs.renameSync(partial, out);
}

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
