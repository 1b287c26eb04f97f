// An independent OPC UA client (node-opcua) run by the tests against Huoyan's server:
// it finds the vision system by the Machine Vision namespace, reads the last result,
// calls Halt and then a method the Halted state forbids. Prints one JSON line.
"use strict";
const { OPCUAClient, MessageSecurityMode, SecurityPolicy, DataType, makeBrowsePath, StatusCodes } =
  require("node-opcua-client");

const MV = "http://opcfoundation.org/UA/MachineVision";

async function main() {
  const [endpoint, station] = process.argv.slice(2);
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 3, initialDelay: 200 },
  });
  await client.connect(endpoint);
  const session = await client.createSession();
  try {
    const namespaces = (await session.readNamespaceArray());
    const ns = namespaces.indexOf(MV);
    if (ns < 0) throw new Error("Machine Vision namespace not found");
    const resolve = async (path) => {
      const result = await session.translateBrowsePath(makeBrowsePath("ObjectsFolder", path));
      if (!result.statusCode.equals(StatusCodes.Good)) throw new Error(`cannot resolve ${path}: ${result.statusCode}`);
      return result.targets[0].targetId;
    };
    const base = `/${ns}:${station}`;
    const last = `${base}/${ns}:ResultManagement/${ns}:Results/${ns}:LastResult`;
    const content = await session.read({ nodeId: await resolve(`${last}/${ns}:ResultContent`) });
    const resultState = await session.read({ nodeId: await resolve(`${last}/${ns}:ResultState`) });
    const top = await resolve(`${base}/${ns}:VisionStateMachine`);
    const auto = await resolve(`${base}/${ns}:VisionStateMachine/${ns}:AutomaticModeStateMachine`);
    const halt = await session.call({
      objectId: top,
      methodId: await resolve(`${base}/${ns}:VisionStateMachine/${ns}:Halt`),
      inputArguments: [
        { dataType: DataType.Int32, value: 0 },
        { dataType: DataType.String, value: "node-opcua test" },
      ],
    });
    const current = await session.read({ nodeId: await resolve(`${base}/${ns}:VisionStateMachine/CurrentState`) });
    const stop = await session.call({
      objectId: auto,
      methodId: await resolve(`${base}/${ns}:VisionStateMachine/${ns}:AutomaticModeStateMachine/${ns}:Stop`),
      inputArguments: [
        { dataType: DataType.Int32, value: 0 },
        { dataType: DataType.String, value: "" },
      ],
    });
    console.log(JSON.stringify({
      namespaceIndex: ns,
      resultContent: content.value.value,
      resultState: resultState.value.value,
      haltStatus: halt.statusCode.name,
      stateAfterHalt: current.value.value.text,
      stopInHalted: stop.statusCode.name,
    }));
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
