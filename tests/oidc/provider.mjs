// A real OpenID provider for the OAuth tests: oidc-provider (a certified implementation) issuing
// access tokens with client credentials and resource indicators (RFC 8707), as JWTs or opaque
// tokens with an introspection endpoint (RFC 7662).
//
//   node provider.mjs <path of oidc-provider's lib/index.js> <config.json>
//
// config.json: {"issuer", "port", "jwks": {"keys": [private JWKs, the first signs]},
//               "clients": [{"client_id", "client_secret", "scopes": [...], "format": "jwt"|"opaque"}],
//               "introspector": "<client_id allowed to introspect every token>"}
// Any resource indicator is accepted: a token's audience is the resource its client asked for.
// Prints "listening" once it accepts connections.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [modulePath, configPath] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(modulePath).href);
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const clients = new Map(config.clients.map((client) => [client.client_id, client]));

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: config.jwks.keys[0].alg, // none is issued; the default (RS256) needs an RSA key
  })),
  jwks: config.jwks,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) =>
        client.clientId === config.introspector || client.clientId === token.clientId,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource, client) => {
        const known = clients.get(client.clientId);
        return {
          scope: (known?.scopes ?? []).join(' '),
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: known?.format ?? 'jwt',
          jwt: { sign: { alg: config.jwks.keys[0].alg } },
        };
      },
    },
  },
});
provider.proxy = false;
const server = provider.listen(config.port, '127.0.0.1', () => console.log('listening'));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
