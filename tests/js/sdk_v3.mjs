// The AWS SDK for JavaScript v3 (ApiGatewayManagementApiClient) against a running Gangway node,
// with SigV4 checked. Called by tests/aws_sdk.rs with:
//   ENDPOINT CONNECTION_ID GONE_ID ACCESS_KEY SECRET_KEY
// Prints one line per check; exits non-zero on the first failure.
import {
  ApiGatewayManagementApiClient,
  DeleteConnectionCommand,
  GetConnectionCommand,
  GoneException,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

const [endpoint, connId, goneId, accessKeyId, secretAccessKey] = process.argv.slice(2);

function client(secret = secretAccessKey) {
  return new ApiGatewayManagementApiClient({
    endpoint,
    region: "ap-southeast-2",
    credentials: { accessKeyId, secretAccessKey: secret },
  });
}

function check(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name} ${detail}`);
  if (!ok) process.exit(1);
}

const c = client();
let r = await c.send(new PostToConnectionCommand({ ConnectionId: connId, Data: "from js sdk v3" }));
check("js v3 PostToConnection", r.$metadata.httpStatusCode === 200);

r = await c.send(new GetConnectionCommand({ ConnectionId: connId }));
check("js v3 GetConnection", r.Identity?.SourceIp === "127.0.0.1" && r.ConnectedAt instanceof Date,
  JSON.stringify(r.Identity));

try {
  await c.send(new PostToConnectionCommand({ ConnectionId: goneId, Data: "x" }));
  check("js v3 GoneException", false, "no exception");
} catch (e) {
  check("js v3 GoneException", e instanceof GoneException, e.name);
}

try {
  await client("wrong-secret").send(new PostToConnectionCommand({ ConnectionId: connId, Data: "x" }));
  check("js v3 wrong secret refused", false, "accepted");
} catch (e) {
  check("js v3 wrong secret refused", e.$metadata?.httpStatusCode === 403, e.name);
}

r = await c.send(new DeleteConnectionCommand({ ConnectionId: connId }));
check("js v3 DeleteConnection", r.$metadata.httpStatusCode === 204);
