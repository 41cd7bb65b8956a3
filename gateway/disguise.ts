/**
 * What a stranger sees: the stock pages of a default nginx, byte for byte
 * in shape, with `Server: nginx` and nothing that hints at an API.
 *
 * @module
 */

/** The frame of nginx's stock HTML pages (`index.html`, `50x.html`), `title` and `body` inside it. */
function stockPage(title: string, body: string): string {
  return `<!DOCTYPE html>
<html>
<head>
<title>${title}</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
${body}</body>
</html>
`;
}

const WELCOME = stockPage(
  "Welcome to nginx!",
  `<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
`,
);

/** The stock `50x.html` of nginx's default site. */
const ERROR_50X = stockPage(
  "Error",
  `<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
<p>If you are the system administrator of this resource then you should check
the error log for details.</p>
<p><em>Faithfully yours, nginx.</em></p>
`,
);

function statusPage(status: number, text: string): string {
  return `<html>
<head><title>${status} ${text}</title></head>
<body>
<center><h1>${status} ${text}</h1></center>
<hr><center>nginx</center>
</body>
</html>
`;
}

function page(status: number, body: string, method: string): Response {
  const headers = new Headers({
    "server": "nginx",
    "content-type": "text/html",
    "date": new Date().toUTCString(),
  });
  return new Response(method === "HEAD" ? null : body, { status, headers });
}

/**
 * nginx's own answer when a location asks for Basic auth (`auth_basic`):
 * its 401 page and challenge, with no word of what is behind it.
 */
export function basicChallenge(method: string): Response {
  const res = page(401, statusPage(401, "Authorization Required"), method);
  res.headers.set("www-authenticate", 'Basic realm="Restricted"');
  return res;
}

/** nginx's 400, for a request nginx itself would refuse (a Host that is no host name). */
export function badRequest(method: string): Response {
  return page(400, statusPage(400, "Bad Request"), method);
}

/** The answer at `/` and for unauthenticated requests to paths that are no service. */
export function disguise(pathname: string, method: string): Response {
  if (pathname === "/50x.html" && (method === "GET" || method === "HEAD")) {
    // The stock configuration serves its error page there.
    return page(200, ERROR_50X, method);
  }
  if (pathname === "/" || pathname === "/index.html") {
    if (method === "GET" || method === "HEAD") return page(200, WELCOME, method);
    return page(405, statusPage(405, "Not Allowed"), method);
  }
  return page(404, statusPage(404, "Not Found"), method);
}
