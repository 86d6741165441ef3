"""Server reflection through a second, independent protobuf implementation.

Debian's python3-grpcio (gRPC C-core) and python3-protobuf (the C++ runtime, which
validates descriptors as strictly as grpcurl's Go runtime): lists a server's services,
loads every file reflection returns for each into a fresh descriptor pool (a bad
descriptor fails here), then calls one method knowing nothing but what reflection said.

    python3 reflection_check.py ADDRESS CA|- CERT|- KEY|- METHOD
    (METHOD: /package.Service/Method, called with an empty request)

Prints one JSON object: {"services": [...], "methods": {service: [...]}, "call": {...}}.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def fields(data):
    """(field number, value) pairs of a message's length-delimited and varint fields."""
    at = 0
    while at < len(data):
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(data, at)
        elif wire == 2:
            length, at = varint(data, at)
            value, at = data[at:at + length], at + length
        else:
            raise ValueError("unexpected wire type %d" % wire)
        yield number, value


def length_delimited(number, payload):
    key, out = (number << 3) | 2, bytearray()
    for value in (key, len(payload)):
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                break
    return bytes(out) + payload


def ask(channel, request):
    """One ServerReflectionRequest (bytes) over grpc.reflection.v1; the response's answer field."""
    info = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    for response in info(iter([request]), timeout=10):
        for number, value in fields(response):
            if number == 7:  # error_response
                raise RuntimeError("reflection error: %r" % dict(fields(value)))
            if number in (4, 6):  # file_descriptor_response, list_services_response
                return value
    raise RuntimeError("no answer")


def main():
    address, ca, cert, key, method = sys.argv[1:6]
    if ca == "-":
        channel = grpc.insecure_channel(address)
    else:
        read = lambda path: open(path, "rb").read()
        credentials = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
        channel = grpc.secure_channel(address, credentials)
    services = [dict(fields(entry))[1].decode() for number, entry in fields(ask(channel, length_delimited(7, b""))) if number == 1]

    pool = descriptor_pool.DescriptorPool()
    loaded = set()
    methods = {}
    for service in services:
        files = [descriptor_pb2.FileDescriptorProto.FromString(value) for number, value in fields(ask(channel, length_delimited(4, service.encode()))) if number == 1]
        by_name = {file.name: file for file in files}

        def add(file):
            if file.name in loaded:
                return
            for dependency in file.dependency:
                add(by_name[dependency])
            pool.Add(file)  # the C++ runtime validates the file here
            loaded.add(file.name)

        for file in files:
            add(file)
        methods[service] = [m.name for m in pool.FindServiceByName(service).methods]

    service_name, method_name = method.strip("/").split("/")
    method_descriptor = pool.FindServiceByName(service_name).methods_by_name[method_name]
    if hasattr(message_factory, "GetMessageClass"):
        message_class = message_factory.GetMessageClass
    else:  # protobuf before 4.22
        message_class = message_factory.MessageFactory(pool).GetPrototype
    request_class = message_class(method_descriptor.input_type)
    response_class = message_class(method_descriptor.output_type)
    call = channel.unary_unary(method, request_serializer=request_class.SerializeToString, response_deserializer=response_class.FromString)
    try:
        answer = {"ok": True, "response": json_format.MessageToDict(call(request_class(), timeout=10))}
    except grpc.RpcError as error:
        answer = {"ok": False, "code": error.code().name, "details": error.details()}
    print(json.dumps({"services": services, "methods": methods, "call": answer}))


if __name__ == "__main__":
    main()
