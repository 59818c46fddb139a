// An application with no OpenTelemetry code: Node's http server answering "ok" on the port given.
const http = require('http');
http.createServer((req, res) => res.end('ok')).listen(Number(process.argv[2]), '127.0.0.1', () => console.log('listening'));
