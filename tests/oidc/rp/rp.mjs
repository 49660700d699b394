// A relying party on panva's openid-client (OpenID Certified), driven line by line by
// tests/oidc/test_certified_rp.py: it prints JSON lines and reads the callback URL on stdin.
import * as client from 'openid-client'
import * as readline from 'node:readline'

const [issuer, clientId, secret, redirectUri, postLogout, extra] = process.argv.slice(2)
const lines = readline.createInterface({ input: process.stdin })
const next = () => new Promise((resolve) => lines.once('line', resolve))
const say = (value) => process.stdout.write(JSON.stringify(value) + '\n')

try {
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.ClientSecretBasic(secret),
    { execute: [client.allowInsecureRequests] })
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri, scope: 'openid profile email', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    ...JSON.parse(extra || '{}'),
  })
  say({ authorize: url.href })
  const callback = await next()
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    maxAge: extra && JSON.parse(extra).max_age !== undefined ? Number(JSON.parse(extra).max_age) : undefined,
  })
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  const logout = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: postLogout, state: 'fin' })
  say({ claims, userinfo, logout: logout.href, access_token: tokens.access_token })
  // a replayed callback: the library sends the code again and must be refused
  try {
    await client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce })
    say({ replay: 'accepted' })
  } catch (error) {
    say({ replay: error.error || error.code || error.name })
  }
} catch (error) {
  say({ error: String(error), cause: error.cause ? JSON.stringify(error.cause) : '', code: error.code || '' })
}
lines.close()
