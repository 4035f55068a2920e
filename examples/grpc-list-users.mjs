// Lists users over gRPC with @grpc/grpc-js, authenticated by an access token (a machine user's, a PAT,
// or a user's): node examples/grpc-list-users.mjs "$ACCESS_TOKEN" [http://localhost:8080]
// Prints the ListUsers response as JSON. Run it from the repository root (it loads proto/).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const [token, baseUrl = process.env.PASSKEYD_URL ?? 'http://localhost:8080'] = process.argv.slice(2);
if (!token) {
  console.error('usage: node examples/grpc-list-users.mjs ACCESS_TOKEN [URL]');
  process.exit(2);
}

const definition = protoLoader.loadSync('passkeyd/user/v2/user_service.proto', {
  includeDirs: ['proto', 'node_modules/google-proto-files'],
  longs: String,
  enums: String,
  defaults: false,
});
const { UserService } = grpc.loadPackageDefinition(definition).passkeyd.user.v2;

const url = new URL(baseUrl);
const credentials = url.protocol === 'https:' ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
const users = new UserService(url.host, credentials);

const metadata = new grpc.Metadata();
metadata.set('authorization', `Bearer ${token}`);

users.listUsers({ query: { limit: 100 } }, metadata, (err, response) => {
  users.close();
  if (err) {
    console.error(`ListUsers failed: ${grpc.status[err.code]}: ${err.details}`);
    process.exit(1);
  }
  console.log(JSON.stringify(response));
});
