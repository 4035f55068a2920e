/**
 * A small service built at run time (not from proto/) whose request message has one field of every kind
 * the REST transcoder must convert, and whose `google.api.http` rules use every template feature:
 * nested field paths, multi-segment variables, "**", verbs, body "*", a single-field body, response_body
 * and additional_bindings. It lets the transcoding tests exercise the mechanics without domain rules.
 */
import { create, createFileRegistry, setExtension, type DescMessage, type DescService } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  type FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  MethodOptionsSchema,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
  type MethodOptions,
} from '@bufbuild/protobuf/wkt';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { file_google_api_annotations, http } from '../../gen/google/api/annotations_pb.js';
import { HttpRuleSchema } from '../../gen/google/api/http_pb.js';

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

type FieldInit = MessageInitShape<typeof FieldDescriptorProtoSchema>;

function field(name: string, number: number, type: Type, extra: FieldInit = {}): FieldInit {
  return { name, number, type, label: Label.OPTIONAL, jsonName: camel(name), ...extra };
}

function rule(init: MessageInitShape<typeof HttpRuleSchema>): MethodOptions {
  const options = create(MethodOptionsSchema);
  setExtension(options, http, create(HttpRuleSchema, init));
  return options;
}

const fileProto = create(FileDescriptorProtoSchema, {
  name: 'test/echo/v1/echo.proto',
  package: 'test.echo.v1',
  syntax: 'proto3',
  dependency: ['google/api/annotations.proto', 'google/protobuf/struct.proto', 'google/protobuf/timestamp.proto', 'google/protobuf/wrappers.proto'],
  enumType: [
    {
      name: 'Color',
      value: [
        { name: 'COLOR_UNSPECIFIED', number: 0 },
        { name: 'COLOR_RED', number: 1 },
        { name: 'COLOR_BLUE', number: 2 },
      ],
    },
  ],
  messageType: [
    { name: 'Shelf', field: [field('id', 1, Type.STRING), field('size', 2, Type.INT32)] },
    {
      name: 'EchoRequest',
      field: [
        field('name', 1, Type.STRING),
        field('shelf', 2, Type.MESSAGE, { typeName: '.test.echo.v1.Shelf' }),
        field('count', 3, Type.INT32),
        field('big', 4, Type.INT64),
        field('limit', 5, Type.UINT32),
        field('flag', 6, Type.BOOL),
        field('ratio', 7, Type.DOUBLE),
        field('color', 8, Type.ENUM, { typeName: '.test.echo.v1.Color' }),
        field('tags', 9, Type.STRING, { label: Label.REPEATED }),
        field('colors', 10, Type.ENUM, { typeName: '.test.echo.v1.Color', label: Label.REPEATED }),
        field('at', 11, Type.MESSAGE, { typeName: '.google.protobuf.Timestamp' }),
        field('maybe', 12, Type.MESSAGE, { typeName: '.google.protobuf.Int32Value' }),
        field('extra', 13, Type.MESSAGE, { typeName: '.google.protobuf.Struct' }),
        field('user_note', 14, Type.STRING),
        field('blob', 15, Type.BYTES),
      ],
    },
  ],
  service: [
    {
      name: 'EchoService',
      method: [
        {
          name: 'Get',
          inputType: '.test.echo.v1.EchoRequest',
          outputType: '.test.echo.v1.EchoRequest',
          options: rule({
            pattern: { case: 'get', value: '/v1/shelves/{shelf.id}/books/{name=pages/*}' },
            additionalBindings: [{ pattern: { case: 'post', value: '/v1/shelves/{shelf.id}:echo' }, body: 'extra' }],
          }),
        },
        {
          name: 'Post',
          inputType: '.test.echo.v1.EchoRequest',
          outputType: '.test.echo.v1.EchoRequest',
          options: rule({ pattern: { case: 'post', value: '/v1/echo' }, body: '*' }),
        },
        {
          name: 'Literal',
          inputType: '.test.echo.v1.EchoRequest',
          outputType: '.test.echo.v1.EchoRequest',
          options: rule({ pattern: { case: 'post', value: '/v1/shelves/special:echo' }, body: '*' }),
        },
        { name: 'Fail', inputType: '.test.echo.v1.EchoRequest', outputType: '.test.echo.v1.EchoRequest', options: rule({ pattern: { case: 'delete', value: '/v1/fail/{name}' } }) },
        {
          name: 'Picked',
          inputType: '.test.echo.v1.EchoRequest',
          outputType: '.test.echo.v1.EchoRequest',
          options: rule({ pattern: { case: 'get', value: '/v1/picked/{name}' }, responseBody: 'shelf' }),
        },
        {
          name: 'Files',
          inputType: '.test.echo.v1.EchoRequest',
          outputType: '.test.echo.v1.EchoRequest',
          options: rule({ pattern: { case: 'get', value: '/v1/files/{name=**}' } }),
        },
      ],
    },
  ],
});

const deps = new Map([file_google_api_annotations, file_google_protobuf_struct, file_google_protobuf_timestamp, file_google_protobuf_wrappers].map((f) => [f.proto.name, f]));
const registry = createFileRegistry(fileProto, (name) => deps.get(name));

/** test.echo.v1.EchoService. */
export const EchoService: DescService = registry.getService('test.echo.v1.EchoService')!;
/** test.echo.v1.EchoRequest (also every method's response). */
/** test.echo.v1.Shelf. */
export const Shelf: DescMessage = registry.getMessage('test.echo.v1.Shelf')!;
