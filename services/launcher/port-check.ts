import { createServer } from "node:net";

/**
 * The ports of `ports` that cannot be listened on at `host` right now, most often
 * because another mesh holds them. Checked before starting, so a second `npm start`
 * says so instead of finding the first mesh's gateway ready.
 */
export async function portsTaken(host: string, ports: readonly (readonly [what: string, port: number])[]): Promise<[string, number][]> {
  const taken: [string, number][] = [];
  for (const [what, port] of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
    });
    if (!free) taken.push([what, port]);
  }
  return taken;
}
