"""Reference ext_proc processor in Python (grpc.aio + Envoy's protos from
xds-protos) with the same decision logic as switchboard's random router:
read the model from the buffered JSON body, pick a random endpoint from the
pods file, set target-pod, name the pod in the response. Used only as a
baseline by scripts/bench-extproc."""
import argparse
import asyncio
import json
import random

import grpc
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

PM = processing_mode_pb2.ProcessingMode
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def mutation(**headers):
    return ep.HeaderMutation(set_headers=[
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k.replace("_", "-"), raw_value=v.encode()),
                                   append_action=OVERWRITE) for k, v in headers.items()])


def error(status, message, code):
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    return ep.ProcessingResponse(immediate_response=ep.ImmediateResponse(
        status={"code": status}, body=body.encode(), headers=mutation(content_type="application/json")))


class Processor(ep_grpc.ExternalProcessorServicer):
    def __init__(self, pods):
        self.pods = pods

    async def Process(self, request_iterator, context):
        pod = None
        async for req in request_iterator:
            kind = req.WhichOneof("request")
            if kind == "request_headers":
                yield ep.ProcessingResponse(
                    request_headers=ep.HeadersResponse(response=ep.CommonResponse()),
                    mode_override=PM(request_header_mode=PM.SEND, response_header_mode=PM.SEND,
                                     request_body_mode=PM.BUFFERED, response_body_mode=PM.NONE,
                                     request_trailer_mode=PM.SKIP, response_trailer_mode=PM.SKIP))
            elif kind == "request_body":
                try:
                    model = json.loads(req.request_body.body)["model"]
                except (ValueError, KeyError, TypeError):
                    yield error(400, "request body is not valid JSON", "invalid_json")
                    return
                eps = self.pods.get(model)
                if not eps:
                    yield error(404, f"The model '{model}' does not exist", "model_not_found")
                    return
                pod = random.choice(eps)
                yield ep.ProcessingResponse(request_body=ep.BodyResponse(response=ep.CommonResponse(
                    header_mutation=mutation(target_pod=pod, routing_strategy="random"))))
            elif kind == "response_headers":
                yield ep.ProcessingResponse(response_headers=ep.HeadersResponse(response=ep.CommonResponse(
                    header_mutation=mutation(x_switchboard_pod=pod or ""))))
            elif kind == "response_body":
                yield ep.ProcessingResponse(response_body=ep.BodyResponse(response=ep.CommonResponse()))
            elif kind == "request_trailers":
                yield ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
            elif kind == "response_trailers":
                yield ep.ProcessingResponse(response_trailers=ep.TrailersResponse())


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:50061")
    ap.add_argument("--pods-file", required=True)
    a = ap.parse_args()
    with open(a.pods_file) as f:
        doc = yaml.safe_load(f)
    pods = {m["name"]: [e if isinstance(e, str) else e["address"] for e in m.get("endpoints") or []]
            for m in doc["models"]}
    server = grpc.aio.server()
    ep_grpc.add_ExternalProcessorServicer_to_server(Processor(pods), server)
    server.add_insecure_port(a.listen)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
