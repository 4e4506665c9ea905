"""deploy/wharf.yaml against what Wharf's code expects.

The template is created in moto's CloudFormation (the session's moto server, over HTTP). moto
creates only some resource types, so the stack is a copy holding those (queues, bucket, IAM roles,
SNS topics, log groups), references to the others replaced by placeholders; the queues, the
bucket and the roles' policies are then read back through the AWS APIs. What moto's
CloudFormation leaves out of a bucket (its public access block and lifecycle rules) is put through
S3's own API as the template states it and read back; the rest (task definitions, alarms, scaling)
is read from the template. Queue names, prefixes and metric names come from Wharf's code, so a
change on either side fails here.
"""

import ast
import json
import re
from pathlib import Path
from urllib.parse import unquote
from uuid import uuid4

import pytest
from cfnlint.decode import cfn_yaml
from django.conf import settings

from archival.lifecycle import lifecycle_rules
from core.aws import aws_client
from core.queues import DLQ_RETENTION_S, LONG_POLL_S, QUEUES
from messaging.backlog import METRICS

TEMPLATE = Path(settings.BASE_DIR) / "deploy" / "wharf.yaml"
MOTO_TYPES = {
    "AWS::SQS::Queue",
    "AWS::S3::Bucket",
    "AWS::IAM::Role",
    "AWS::SNS::Topic",
    "AWS::Logs::LogGroup",
}
SMS_IDENTITY = "arn:aws:sms-voice:us-east-1:123456789012:phone-number/phone-0123456789abcdef"
PREFIX_PARAMETERS = {
    "MediaIncomingPrefix": "MEDIA_INCOMING_PREFIX",
    "MediaOutgoingPrefix": "MEDIA_OUTGOING_PREFIX",
    "ReportsPrefix": "REPORTS_PREFIX",
    "ArchivePrefix": "ARCHIVE_PREFIX",
}
# The only actions that may have "*" as their resource: none of them can name one.
UNNAMEABLE = {"ecr:GetAuthorizationToken", "sqs:ListQueues", "cloudwatch:PutMetricData"}


def _template() -> dict:
    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


def _placeholder(name: str, attribute: str = "") -> str:
    return f"arn:aws:placeholder:us-east-1:123456789012:{name}{'/' + attribute if attribute else ''}"


def _without(value, dropped: set[str]):
    """`value` with every reference to a dropped resource replaced by a placeholder."""
    if isinstance(value, list):
        return [_without(item, dropped) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in dropped:
        return _placeholder(value["Ref"])
    if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][0] in dropped:
        return _placeholder(*value["Fn::GetAtt"])
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):

        def replace(match: re.Match) -> str:
            name, _, attribute = match.group(1).partition(".")
            return _placeholder(name, attribute) if name in dropped else match.group(0)

        return {"Fn::Sub": re.sub(r"\$\{([A-Za-z0-9.]+)\}", replace, value["Fn::Sub"])}
    return {key: _without(item, dropped) for key, item in value.items()}


def _moto_copy(template: dict) -> dict:
    resources = template["Resources"]
    dropped = {name for name, resource in resources.items() if resource["Type"] not in MOTO_TYPES}
    kept = {}
    for name, resource in resources.items():
        if name in dropped:
            continue
        resource = _without(resource, dropped)
        resource.pop("DependsOn", None)
        kept[name] = resource
    return {**template, "Resources": kept, "Outputs": {}}


@pytest.fixture(scope="module")
def template() -> dict:
    return _template()


@pytest.fixture(scope="module")
def stack(template) -> dict:
    """The stack created in moto: its name and the physical id of each resource."""
    name = f"wharf-t{uuid4().hex[:8]}"
    cloudformation = aws_client("cloudformation")
    parameters = {
        "Size": "dev",
        "ImageTag": "1.0.0",
        "PublicHostName": "wharf.example.com",
        "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
        "OperatorEmail": "ops@example.com",
        "SesIdentity": "example.com",
        "SenderEmail": "wharf@example.com",
        "SmsOriginationIdentityArn": SMS_IDENTITY,
    }
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(_moto_copy(template)),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    status = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE"
    resources = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    yield {
        "name": name,
        "ids": {resource["LogicalResourceId"]: resource["PhysicalResourceId"] for resource in resources},
    }
    cloudformation.delete_stack(StackName=name)


def _queue_arn(stack_name: str, queue: str) -> str:
    return f"arn:aws:sqs:{settings.AWS_REGION}:123456789012:{stack_name}-{queue}"


def test_the_queues_are_wharfs_with_their_dead_letter_queues_and_timeouts(stack):
    sqs = aws_client("sqs")
    prefix = f"{stack['name']}-"
    made = {url.rsplit("/", 1)[1] for url in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])}

    assert made == {f"{prefix}{name}" for spec in QUEUES.values() for name in (spec.name, spec.dlq_name)}
    for spec in QUEUES.values():
        url = sqs.get_queue_url(QueueName=f"{prefix}{spec.name}")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == spec.visibility_timeout, spec.name
        assert int(attributes["ReceiveMessageWaitTimeSeconds"]) == LONG_POLL_S
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": _queue_arn(stack["name"], spec.dlq_name),
            "maxReceiveCount": spec.max_receive_count,
        }
        dlq_url = sqs.get_queue_url(QueueName=f"{prefix}{spec.dlq_name}")["QueueUrl"]
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        assert int(dlq["MessageRetentionPeriod"]) == DLQ_RETENTION_S


def test_the_prefixes_are_wharfs(template):
    parameters = template["Parameters"]

    for parameter, setting in PREFIX_PARAMETERS.items():
        assert parameters[parameter]["Default"] == getattr(settings, setting)


def test_the_bucket_is_private_encrypted_and_has_wharfs_lifecycle_rules(stack, template):
    s3 = aws_client("s3")
    bucket = stack["ids"]["Bucket"]
    properties = template["Resources"]["Bucket"]["Properties"]
    rules = [_lifecycle_rule(rule) for rule in properties["LifecycleConfiguration"]["Rules"]]
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
    )
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})

    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    read_back = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    wharfs = [rule for rule in read_back if rule["ID"].startswith("wharf-")]
    assert sorted(map(_comparable, wharfs)) == sorted(map(_comparable, lifecycle_rules()))


def _lifecycle_rule(rule: dict) -> dict:
    """A CloudFormation lifecycle rule in S3's API shape, its prefixes given their default values."""
    prefix = rule["Prefix"]
    if isinstance(prefix, dict):
        prefix = _default(prefix)
    api = {"ID": rule["Id"], "Filter": {"Prefix": prefix}, "Status": rule["Status"]}
    if "Transitions" in rule:
        api["Transitions"] = [
            {"Days": t["TransitionInDays"], "StorageClass": t["StorageClass"]} for t in rule["Transitions"]
        ]
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        }
    return api


def _default(value: dict) -> str:
    """A `Ref` or `Fn::Sub` of the prefix parameters, with each at its default."""
    defaults = {parameter: getattr(settings, setting) for parameter, setting in PREFIX_PARAMETERS.items()}
    if "Ref" in value:
        return defaults[value["Ref"]]
    return re.sub(r"\$\{(\w+)\}", lambda match: defaults[match.group(1)], value["Fn::Sub"])


def _comparable(rule: dict) -> tuple:
    transitions = tuple(sorted((t["Days"], t["StorageClass"]) for t in rule.get("Transitions", [])))
    abort = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
    return rule["ID"], rule["Filter"]["Prefix"], rule["Status"], transitions, abort


def _statements(stack: dict, role: str) -> list[dict]:
    iam = aws_client("iam")
    role_name = stack["ids"][role]
    statements = []
    for policy in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy)["PolicyDocument"]
        if isinstance(document, str):
            document = _policy_document(document)
        statements += [statement for statement in document["Statement"] if statement]
    return statements


def _policy_document(text: str) -> dict:
    """IAM's URL-encoded JSON; moto's CloudFormation stores an inline policy as Python's repr."""
    try:
        return json.loads(unquote(text))
    except ValueError:
        return ast.literal_eval(text)


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("role", ["ExecutionRole", "WebTaskRole", "WorkerTaskRole", "BeatTaskRole"])
def test_no_role_has_a_star_resource_where_one_can_be_named(stack, role):
    for statement in _statements(stack, role):
        if "*" in _listed(statement["Resource"]):
            assert set(_listed(statement["Action"])) <= UNNAMEABLE, statement


@pytest.mark.parametrize("role", ["WebTaskRole", "WorkerTaskRole", "BeatTaskRole"])
def test_the_task_roles_reach_only_wharfs_prefixes_and_queues(stack, role):
    bucket_arn = f"arn:aws:s3:::{stack['ids']['Bucket']}"
    prefixes = {f"{bucket_arn}/{getattr(settings, setting)}*" for setting in PREFIX_PARAMETERS.values()}
    queues = {_queue_arn(stack["name"], n) for spec in QUEUES.values() for n in (spec.name, spec.dlq_name)}

    for statement in _statements(stack, role):
        assert statement["Effect"] == "Allow"
        actions, resources = _listed(statement["Action"]), _listed(statement["Resource"])
        services = {action.split(":")[0] for action in actions}
        assert len(services) == 1, statement
        if services == {"s3"}:
            objects = [resource for resource in resources if resource != bucket_arn]
            assert set(objects) <= prefixes, statement
        elif services == {"sqs"} and resources != ["*"]:
            assert set(resources) <= queues, statement


def test_the_workers_publish_metrics_only_in_wharfs_namespace_and_send_sms_from_the_identity(stack, template):
    statements = {statement["Sid"]: statement for statement in _statements(stack, "WorkerTaskRole")}
    containers = template["Resources"]["OtherWorkerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    environment = {variable["Name"]: variable["Value"] for variable in containers[0]["Environment"]}

    metrics = statements["PublishWharfsMetricsOnly"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": f"Wharf/{stack['name']}"}}
    assert environment["METRICS_NAMESPACE"] == {"Fn::Sub": "Wharf/${AWS::StackName}"}
    assert statements["SmsFromTheConfiguredIdentity"]["Resource"] == SMS_IDENTITY
    consumed = set(statements["ConsumeAndPublishWharfsQueues"]["Resource"])
    assert consumed == {_queue_arn(stack["name"], spec.name) for spec in QUEUES.values()}


def test_the_log_groups_keep_seven_days_at_the_dev_size(stack):
    logs = aws_client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/wharf/{stack['name']}/")["logGroups"]

    assert {group["logGroupName"].rsplit("/", 1)[1] for group in groups} == {
        "web",
        "worker-inbound",
        "worker-outbound",
        "worker-other",
        "beat",
        "migrate",
    }
    assert {group["retentionInDays"] for group in groups} == {7}


# -- from the template alone: what moto does not create ------------------------------------------


def _task_definitions(template: dict) -> dict[str, dict]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::ECS::TaskDefinition"
    }


def test_every_task_gets_the_same_settings_and_secrets_and_the_queue_group_it_serves(template):
    containers = {name: task["ContainerDefinitions"][0] for name, task in _task_definitions(template).items()}
    environments = {name: json.dumps(c["Environment"], sort_keys=True) for name, c in containers.items()}
    secrets = {name: json.dumps(c["Secrets"], sort_keys=True) for name, c in containers.items()}

    assert len(set(environments.values())) == 1
    assert len(set(secrets.values())) == 1
    environment = {
        variable["Name"]: variable["Value"] for variable in containers["WebTaskDefinition"]["Environment"]
    }
    assert environment["SQS_QUEUE_PREFIX"] == {"Fn::Sub": "${AWS::StackName}-"}
    for parameter, setting in PREFIX_PARAMETERS.items():
        assert environment[setting] == {"Ref": parameter}
    assert {s["Name"] for s in containers["WebTaskDefinition"]["Secrets"]} >= {
        "SECRET_KEY",
        "DATABASE_URL",
        "WHATSAPP_ACCESS_TOKEN",
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_VERIFY_TOKEN",
        "SMS_WEBHOOK_TOKEN",
    }
    served = [c["Command"][1].split(",") for c in containers.values() if c["Command"][0] == "worker"]
    assert sorted(queue for group in served for queue in group) == sorted(QUEUES)


def test_there_is_exactly_one_beat(template):
    resources = template["Resources"]
    beat = resources["BeatService"]["Properties"]

    assert beat["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert beat["DesiredCount"] == {"Fn::If": ["IsRunning", 1, 0]}
    assert not [
        resource
        for resource in resources.values()
        if resource["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
        and "BeatService" in json.dumps(resource["Properties"]["ResourceId"])
    ]


def test_alarms_and_scaling_read_the_metrics_wharf_publishes(template):
    wharfs = {"Fn::Sub": "Wharf/${AWS::StackName}"}
    named = set()
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm" and properties.get("Namespace") == wharfs:
            named.add(properties["MetricName"])
        if resource["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy":
            tracking = properties["TargetTrackingScalingPolicyConfiguration"]
            metric = tracking.get("CustomizedMetricSpecification")
            if metric and metric["Namespace"] == wharfs:
                named.add(metric["MetricName"])

    log_metrics = {"ArchivalFailures"}  # from the archival worker's log lines (ArchivalFailedMetric)
    assert named - log_metrics <= set(METRICS)
    assert {"InboundEventsOldestAge", "MessagesQueuedLateness", "InboundEventsPending"} <= named
