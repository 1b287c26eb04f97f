// An independent OPC UA client (node-opcua) run by the tests against Huoyan's server, the
// way a MES connector uses it: it finds the vision system by the Machine Vision namespace,
// subscribes to events on the Server object (not on the vision system), starts single jobs,
// reads the last result, fetches results with GetResultListFiltered and
// GetResultComponentsById, calls Halt and then a method the Halted state forbids.
// Prints one JSON line.
"use strict";
const {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, DataType, VariantArrayType, AttributeIds,
  makeBrowsePath, StatusCodes, NodeId, constructEventFilter, TimestampsToReturn, promoteOpaqueStructure,
} = require("node-opcua-client");

const MV = "http://opcfoundation.org/UA/MachineVision";
const SERVER_OBJECT = "i=2253";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const [endpoint, station, jobs] = process.argv.slice(2);
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 3, initialDelay: 200 },
  });
  await client.connect(endpoint);
  const session = await client.createSession();
  try {
    const namespaces = await session.readNamespaceArray();
    const ns = namespaces.indexOf(MV);
    if (ns < 0) throw new Error("Machine Vision namespace not found");
    const mv = (id) => new NodeId(NodeId.NodeIdType.NUMERIC, id, ns);
    const resolve = async (path) => {
      const result = await session.translateBrowsePath(makeBrowsePath("ObjectsFolder", path));
      if (!result.statusCode.equals(StatusCodes.Good)) throw new Error(`cannot resolve ${path}: ${result.statusCode}`);
      return result.targets[0].targetId;
    };
    const base = `/${ns}:${station}`;
    const top = await resolve(`${base}/${ns}:VisionStateMachine`);
    const auto = await resolve(`${base}/${ns}:VisionStateMachine/${ns}:AutomaticModeStateMachine`);
    const autoState = await resolve(`${base}/${ns}:VisionStateMachine/${ns}:AutomaticModeStateMachine/CurrentState`);
    const results = await resolve(`${base}/${ns}:ResultManagement`);
    const method = async (owner, path, name) => ({ objectId: owner, methodId: await resolve(`${path}/${ns}:${name}`) });
    const ext = (id, fields) => session.constructExtensionObject(mv(id), fields);
    const argument = (value) => ({ dataType: DataType.ExtensionObject, value });

    // Events, subscribed on the Server object as a generic client does.
    const fields = ["EventType", "SourceName", "Message", "Transition", "ToState"];
    const resultFields = ["ResultId", "IsPartial", "ResultState", "JobId", "PartId", "InternalRecipeId",
      "InternalConfigurationId", "CreationTime", "ResultContent"];
    const filter = constructEventFilter([...fields, ...resultFields.map((f) => `${ns}:${f}`)]);
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, publishingEnabled: true,
    });
    const received = [];
    const item = await subscription.monitor(
      { nodeId: SERVER_OBJECT, attributeId: AttributeIds.EventNotifier },
      { queueSize: 1000, filter, discardOldest: false },
      TimestampsToReturn.Neither,
    );
    item.on("changed", (values) => {
      const event = {};
      [...fields, ...resultFields].forEach((name, i) => { event[name] = values[i].value; });
      received.push(event);
    });
    await sleep(300);

    // Single jobs, one part each.
    const start = await method(auto, `${base}/${ns}:VisionStateMachine/${ns}:AutomaticModeStateMachine`, "StartSingleJob");
    const jobIds = [];
    for (let i = 1; i <= Number(jobs); i++) {
      const call = await session.call({
        ...start,
        inputArguments: [
          argument(await ext(3015, { id: `M-${i}` })),
          argument(await ext(3004, { id: `N-${i}` })),
          argument(await ext(3002, { id: "" })),
          argument(await ext(3003, { id: "" })),
          { dataType: DataType.Variant, arrayType: VariantArrayType.Array, value: [] },
        ],
      });
      if (!call.statusCode.equals(StatusCodes.Good)) throw new Error(`StartSingleJob: ${call.statusCode.name}`);
      jobIds.push(call.outputArguments[0].value.id);
      for (let t = 0; t < 200; t++) {  // back to Ready when the part is judged
        const s = await session.read({ nodeId: autoState });
        if (s.value.value.text === "Ready") break;
        await sleep(50);
      }
    }
    for (let t = 0; t < 100 && received.filter((e) => e.ResultId).length < Number(jobs); t++) await sleep(50);
    await subscription.terminate();
    // A structure of a namespace the client has not read the definitions of arrives opaque;
    // a generic client decodes it from the server's DataTypeDefinition attributes.
    for (const e of received) {
      if (e.ResultContent) await promoteOpaqueStructure(session, e.ResultContent.map((v) => ({ value: v })));
    }

    const last = `${base}/${ns}:ResultManagement/${ns}:Results/${ns}:LastResult`;
    const content = await session.read({ nodeId: await resolve(`${last}/${ns}:ResultContent`) });
    await promoteOpaqueStructure(session, content.value.value.map((v) => ({ value: v })));
    const resultState = await session.read({ nodeId: await resolve(`${last}/${ns}:ResultState`) });

    // Results fetched by filter and by id.
    const emptyFilter = async (overrides) => [
      { dataType: DataType.Int32, value: overrides.resultState || 0 },
      argument(await ext(3015, { id: "" })),
      argument(await ext(3004, { id: overrides.partId || "" })),
      argument(await ext(3002, { id: "" })),
      argument(await ext(3013, { id: "" })),
      argument(await ext(3008, { id: "" })),
      argument(await ext(3008, { id: "" })),
      argument(await ext(3003, { id: "" })),
      argument(await ext(3016, { id: overrides.jobId || "" })),
      { dataType: DataType.UInt32, value: overrides.max || 0 },
      { dataType: DataType.UInt32, value: 0 },
      { dataType: DataType.Int32, value: 0 },
    ];
    const listMethod = await method(results, `${base}/${ns}:ResultManagement`, "GetResultListFiltered");
    const list = async (overrides) => {
      const call = await session.call({ ...listMethod, inputArguments: await emptyFilter(overrides) });
      if (!call.statusCode.equals(StatusCodes.Good)) throw new Error(`GetResultListFiltered: ${call.statusCode.name}`);
      const [isComplete, count, handle, resultList] = call.outputArguments.map((a) => a.value);
      return { isComplete, count, handle, parts: resultList.map((r) => r.partId.id), states: resultList.map((r) => r.resultState) };
    };
    const all = await list({});
    const completed = await list({ resultState: 1 });
    const failed = await list({ resultState: 4 });
    const byPart = await list({ partId: "N-2" });
    const byJob = await list({ jobId: jobIds[0] });
    const firstTwo = await list({ max: 2 });
    const components = await session.call({
      ...(await method(results, `${base}/${ns}:ResultManagement`, "GetResultComponentsById")),
      inputArguments: [argument(await ext(3021, { id: received.find((e) => e.ResultId).ResultId.id })),
        { dataType: DataType.Int32, value: 0 }],
    });
    const componentValues = components.outputArguments.map((a) => a.value);
    const release = await session.call({
      ...(await method(results, `${base}/${ns}:ResultManagement`, "ReleaseResultHandle")),
      inputArguments: [{ dataType: DataType.UInt32, value: all.handle }],
    });
    const releaseAgain = await session.call({
      ...(await method(results, `${base}/${ns}:ResultManagement`, "ReleaseResultHandle")),
      inputArguments: [{ dataType: DataType.UInt32, value: all.handle }],
    });

    const halt = await session.call({
      ...(await method(top, `${base}/${ns}:VisionStateMachine`, "Halt")),
      inputArguments: [{ dataType: DataType.Int32, value: 0 }, { dataType: DataType.String, value: "node-opcua test" }],
    });
    const current = await session.read({ nodeId: await resolve(`${base}/${ns}:VisionStateMachine/CurrentState`) });
    const autoWhileHalted = await session.read({ nodeId: autoState });
    const stop = await session.call({
      ...(await method(auto, `${base}/${ns}:VisionStateMachine/${ns}:AutomaticModeStateMachine`, "Stop")),
      inputArguments: [{ dataType: DataType.Int32, value: 0 }, { dataType: DataType.String, value: "" }],
    });
    const resultEvents = received.filter((e) => e.ResultId);
    console.log(JSON.stringify({
      namespaceIndex: ns,
      jobIds,
      resultEvents: resultEvents.map((e) => ({
        sourceName: e.SourceName,
        resultId: e.ResultId.id,
        isPartial: e.IsPartial,
        resultState: e.ResultState,
        jobId: e.JobId.id,
        partId: e.PartId.id,
        internalRecipeId: e.InternalRecipeId.id,
        internalConfigurationId: e.InternalConfigurationId.id,
        creationTime: e.CreationTime,
        verdict: e.ResultContent[0].value.verdict,
        message: JSON.parse(e.ResultContent[1].value),
      })),
      transitions: received.filter((e) => e.Transition).map((e) => e.Transition.text),
      resultContent: content.value.value.map((v) => (typeof v.value === "string" ? v.value : null)),
      verdictInContent: content.value.value[0].value.verdict,
      resultState: resultState.value.value,
      all, completed, failed, byPart, byJob, firstTwo,
      components: {
        count: componentValues.length,
        resultState: componentValues[4],
        partId: componentValues[6].id,
        jobId: componentValues[12].id,
        internalConfigurationId: componentValues[11].id,
      },
      releaseStatus: release.statusCode.name,
      releaseAgainStatus: releaseAgain.statusCode.name,
      haltStatus: halt.statusCode.name,
      stateAfterHalt: current.value.value.text,
      autoStatusWhileHalted: autoWhileHalted.statusCode.name,
      stopInHalted: stop.statusCode.name,
    }));
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
