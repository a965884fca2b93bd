// Deletes a JetStream stream (and with it the workers' durable consumer) over the plain NATS protocol, so the
// browser-test harness needs no NATS client. Usage: node delete-stream.mjs <nats-url> <stream-name>
import net from 'node:net';

const [natsUrl = 'nats://127.0.0.1:4222', stream] = process.argv.slice(2);
if (!stream || !/^[A-Za-z0-9_-]+$/.test(stream)) {
  console.error('usage: node delete-stream.mjs <nats-url> <stream-name>');
  process.exit(2);
}
const url = new URL(natsUrl.replace(/^nats:/, 'http:'));
const socket = net.connect(Number(url.port || 4222), url.hostname);
const timer = setTimeout(() => {
  console.error(`delete-stream: no answer from ${url.host} for ${stream}`);
  process.exit(1);
}, 5000);
let buffer = '';
let sent = false;
socket.setEncoding('utf8');
socket.on('data', (chunk) => {
  buffer += chunk;
  if (!sent && buffer.includes('\r\n')) {
    sent = true;
    socket.write('CONNECT {"verbose":false,"pedantic":false,"name":"browser-tests"}\r\n'
      + 'SUB _INBOX.browser_tests_delete 1\r\n'
      + `PUB $JS.API.STREAM.DELETE.${stream} _INBOX.browser_tests_delete 0\r\n\r\n`);
  }
  if (buffer.includes('PING\r\n')) socket.write('PONG\r\n');
  const reply = /MSG _INBOX\.browser_tests_delete 1 \d+\r\n([^\r]*)\r\n/.exec(buffer);
  if (reply) {
    clearTimeout(timer);
    const answer = JSON.parse(reply[1]);
    if (!answer.success && answer.error?.code !== 404) console.error(`delete-stream: ${reply[1]}`);
    socket.end();
    process.exit(0);
  }
  if (buffer.includes('-ERR')) {
    console.error(`delete-stream: ${buffer.trim()}`);
    process.exit(1);
  }
});
socket.on('error', (e) => {
  console.error(`delete-stream: ${e.message}`);
  process.exit(1);
});
