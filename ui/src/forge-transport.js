// The admin page's transport under Forge: each call to the admin API (CONTRACT.md section 7) goes through
// `invokeRemote` of @forge/bridge, which Forge sends to the remote's baseUrl + path with a Forge Invocation Token
// (whose `principal` is the administrator) and the app system token. It resolves to the remote's answer,
// `{status, headers, body}` with the JSON body already parsed, whatever the status.
export function forgeTransport(invokeRemote) {
  return function send(method, path, body) {
    const request = { path: '/api' + path, method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      request.body = body;
      request.headers['Content-Type'] = 'application/json';
    }
    return invokeRemote(request).then((response) => {
      if (!response || typeof response.status !== 'number') {
        throw new Error('Forge brought back no answer from the add-on');
      }
      return { status: response.status, data: response.body == null ? null : response.body };
    });
  };
}
