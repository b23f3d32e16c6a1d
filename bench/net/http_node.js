// SPDX-License-Identifier: MIT
// Node.js peer of examples/http_server: node's http module, keep-alive,
// the same 13-byte body. Usage: node http_node.js [PORT]
'use strict';
const http = require('http');
const port = Number(process.argv[2] || 8080);
const body = Buffer.from('Hello, World!');
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => {
  console.log(`http_node: listening on 127.0.0.1:${port}`);
});
process.on('SIGTERM', () => process.exit(0));
