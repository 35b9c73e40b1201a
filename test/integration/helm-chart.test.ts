/**
 * The Helm chart (deploy/helm/token-lifecycle-worker) with the pinned Helm v4 (dev/helm):
 * `helm lint --strict`, `helm template` with the default values and the examples, asserting what
 * must hold of every release; values the schema refuses, each naming its field; and `helm install`
 * into a real kube-apiserver (test/support/kube-apiserver.ts), whose objects are read back as the
 * API server admitted and defaulted them, and whose RBAC is asked with the worker's own token.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseClientsFile } from '../../cli/clients-file.js';
import { CHART_DIR, parseManifests, startHelm, type Helm, type KubeObject } from '../support/helm.js';
import { startKubeApiServer, type KubeApiServer } from '../support/kube-apiserver.js';

const EXAMPLES = join(CHART_DIR, '..', 'examples');
const CRD_DIR = join(import.meta.dirname, '..', 'fixtures', 'prometheus-operator-crds');
const PRODUCTION = join(EXAMPLES, 'production.yaml');
const RELEASE = 'token-lifecycle';
const NAMESPACE = 'token-lifecycle';
/** The image the Dockerfile's comment builds (`docker build -t token-lifecycle-worker .`). */
const DEFAULT_IMAGE = 'token-lifecycle-worker:0.1.0';
/** The path at which Kubernetes mounts a pod's own service-account token. */
const SERVICE_ACCOUNT_TOKEN_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

// The shapes the assertions read (Kubernetes' own types, as far as needed).
interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  securityContext?: Record<string, unknown>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  startupProbe?: Record<string, unknown>;
  readinessProbe?: { exec?: { command: string[] } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  secret?: { secretName: string };
  configMap?: { name: string };
  projected?: unknown;
}
interface PodSpec {
  automountServiceAccountToken?: boolean;
  enableServiceLinks?: boolean;
  serviceAccountName?: string;
  securityContext?: Record<string, unknown>;
  containers: Container[];
  volumes?: Volume[];
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: PodSpec;
}

let helm: Helm;

beforeAll(async () => {
  helm = await startHelm();
});

afterAll(async () => {
  await helm?.destroy();
});

function only(objects: KubeObject[], kind: string): KubeObject {
  const found = objects.filter((object) => object.kind === kind);
  expect(
    found.map((object) => object.metadata.name),
    `one ${kind}`,
  ).toHaveLength(1);
  return found[0]!;
}

function podTemplate(objects: KubeObject[], kind: 'Deployment' | 'Job'): PodTemplate {
  return (only(objects, kind).spec as { template: PodTemplate }).template;
}

function worker(objects: KubeObject[]): Container {
  return podTemplate(objects, 'Deployment').spec.containers.find((container) => container.name === 'worker')!;
}

function env(container: Container, name: string): string | undefined {
  return container.env?.find((variable) => variable.name === name)?.value;
}

/** Every check of a pod that must hold whatever the values: non-root, read-only, nothing to escalate. */
function expectLockedDown(template: PodTemplate): void {
  expect(template.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
  // A Service named `metrics` would otherwise set METRICS_PORT in the pod.
  expect(template.spec.enableServiceLinks).toBe(false);
  for (const container of template.spec.containers) {
    expect(container.securityContext, container.name).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
  }
}

/** Whether a pod gets a service-account token: automounted, or projected by hand. */
function mountsServiceAccountToken(template: PodTemplate): boolean {
  const projected = (template.spec.volumes ?? []).some((volume) => volume.projected !== undefined);
  const mounted = template.spec.containers.some((container) =>
    (container.volumeMounts ?? []).some((mount) => mount.mountPath.startsWith(SERVICE_ACCOUNT_TOKEN_DIR)),
  );
  return template.spec.automountServiceAccountToken !== false || projected || mounted;
}

describe('helm lint', () => {
  test('passes --strict with the default values and with each example', async () => {
    for (const values of [[], ['--values', PRODUCTION]]) {
      const result = await helm.run(['lint', '--strict', CHART_DIR, ...values]);
      expect(result.code, `helm lint --strict ${values.join(' ')}:\n${result.stdout}${result.stderr}`).toBe(0);
    }
  });
});

describe('helm template with the default values', () => {
  let objects: KubeObject[];
  beforeAll(async () => {
    objects = await helm.template(RELEASE, NAMESPACE);
  });

  test('runs two or more workers of the default image, with the documented resources', () => {
    const deployment = only(objects, 'Deployment');
    expect((deployment.spec as { replicas: number }).replicas).toBeGreaterThanOrEqual(2);
    const container = worker(objects);
    expect(container.image).toBe(DEFAULT_IMAGE);
    // docs/deployment.md, "Kubernetes": no CPU limit, so that a stampede of first tokens is not throttled.
    expect(container.resources).toEqual({ requests: { cpu: '250m', memory: '512Mi' }, limits: { memory: '1Gi' } });
  });

  test('keeps a worker available through voluntary disruptions', () => {
    const budget = only(objects, 'PodDisruptionBudget').spec as { minAvailable: number; selector: { matchLabels: Record<string, string> } };
    expect(budget.minAvailable).toBeGreaterThanOrEqual(1);
    const podLabels = podTemplate(objects, 'Deployment').metadata.labels;
    expect(podLabels).toMatchObject(budget.selector.matchLabels);
  });

  test('is non-root with a read-only root filesystem, and mounts no service-account token', () => {
    const template = podTemplate(objects, 'Deployment');
    expectLockedDown(template);
    expect(mountsServiceAccountToken(template)).toBe(false);
    expect(only(objects, 'ServiceAccount').automountServiceAccountToken).toBe(false);
    expect(objects.filter((object) => object.kind === 'Role' || object.kind === 'ClusterRole' || object.kind.endsWith('Binding'))).toEqual(
      [],
    );
  });

  test('probes the worker as worker/healthcheck.ts does, on the metrics port the Service exposes', () => {
    const container = worker(objects);
    expect(container.readinessProbe?.exec?.command).toEqual(['node', 'dist/worker/healthcheck.js']);
    expect(container.startupProbe).toMatchObject({ exec: { command: ['node', 'dist/worker/healthcheck.js'] } });
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/metrics', port: 'metrics' });
    expect(env(container, 'METRICS_HOST')).toBe('0.0.0.0');
    const service = only(objects, 'Service').spec as { ports: { port: number; targetPort: string }[]; selector: Record<string, string> };
    expect(service.ports).toEqual([expect.objectContaining({ port: Number(env(container, 'METRICS_PORT')), targetPort: 'metrics' })]);
    expect(podTemplate(objects, 'Deployment').metadata.labels).toMatchObject(service.selector);
  });

  test('renders no clients file, no hook Job and no Prometheus Operator objects', () => {
    expect(objects.map((object) => object.kind).sort()).toEqual(['Deployment', 'PodDisruptionBudget', 'Service', 'ServiceAccount']);
  });
});

describe('helm template with the production example', () => {
  let objects: KubeObject[];
  beforeAll(async () => {
    objects = await helm.template(RELEASE, NAMESPACE, ['--values', PRODUCTION]);
  });

  test('mounts the worker its token, and allows TokenRequest for the named accounts only', () => {
    const template = podTemplate(objects, 'Deployment');
    expectLockedDown(template);
    expect(template.spec.automountServiceAccountToken).toBe(true);
    const roles = objects.filter((object) => object.kind === 'Role');
    expect(roles.map((role) => [role.metadata.namespace, role.rules])).toEqual([
      ['billing', [{ apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'], resourceNames: ['billing-api'] }]],
    ]);
    const bindings = objects.filter((object) => object.kind === 'RoleBinding');
    expect(bindings.map((binding) => [binding.metadata.namespace, binding.roleRef, binding.subjects])).toEqual([
      [
        'billing',
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: roles[0]!.metadata.name },
        [{ kind: 'ServiceAccount', name: template.spec.serviceAccountName, namespace: NAMESPACE }],
      ],
    ]);
    expect(objects.some((object) => object.kind.startsWith('Cluster'))).toBe(false);
  });

  test('mounts every Secret a file: reference of the clients file or of the settings points into, read-only', () => {
    const template = podTemplate(objects, 'Deployment');
    const container = worker(objects);
    const secretVolumes = new Set(
      (template.spec.volumes ?? []).filter((volume) => volume.secret !== undefined).map((volume) => volume.name),
    );
    const secretDirs = (container.volumeMounts ?? []).filter((mount) => secretVolumes.has(mount.name));
    expect(secretDirs.every((mount) => mount.readOnly === true)).toBe(true);
    const configMap = only(objects, 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const references = [
      ...[...configMap.data['clients.yaml']!.matchAll(/file:(\/\S+)/g)].map((match) => match[1]!),
      ...(container.env ?? []).flatMap((variable) => (variable.value?.startsWith('file:') ? [variable.value.slice('file:'.length)] : [])),
    ];
    expect(references.length).toBeGreaterThanOrEqual(5);
    for (const path of references) {
      expect(
        secretDirs.some((mount) => path.startsWith(`${mount.mountPath}/`)),
        `${path} lies in a mounted Secret`,
      ).toBe(true);
    }
  });

  test('puts a clients file in the ConfigMap that tokenctl apply accepts', () => {
    const configMap = only(objects, 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const registrations = parseClientsFile(configMap.data['clients.yaml']!, 'clients.yaml');
    expect(registrations.map((registration) => [registration.clientId, registration.authMethod])).toEqual([
      ['orders-api', 'client_secret_basic'],
      ['shipping-api', 'tls_client_auth'],
      ['billing-api', 'private_key_jwt'],
    ]);
  });

  test('applies the clients file with tokenctl apply in a post-install and post-upgrade hook Job', () => {
    const job = only(objects, 'Job');
    expect(job.metadata.annotations?.['helm.sh/hook']).toBe('post-install,post-upgrade');
    const template = podTemplate(objects, 'Job');
    expectLockedDown(template);
    expect(mountsServiceAccountToken(template)).toBe(false);
    const [container] = template.spec.containers;
    expect(container!.image).toBe(worker(objects).image);
    expect(container!.command).toEqual(['node', 'dist/cli/tokenctl.js', 'apply', '/etc/token-lifecycle/clients.yaml', '--prune']);
    const configMap = only(objects, 'ConfigMap');
    const clientsVolume = template.spec.volumes?.find((volume) => volume.configMap?.name === configMap.metadata.name);
    expect(container!.volumeMounts).toContainEqual({ name: clientsVolume!.name, mountPath: '/etc/token-lifecycle', readOnly: true });
    // tokenctl resolves no reference: the clients' secrets stay with the workers.
    expect(
      (template.spec.volumes ?? []).filter((volume) => volume.secret !== undefined).map((volume) => volume.secret!.secretName),
    ).toEqual(['temporal-client-tls', 'temporal-ca']);
    expect(env(container!, 'TEMPORAL_ADDRESS')).toBe(env(worker(objects), 'TEMPORAL_ADDRESS'));
  });

  test('renders a ServiceMonitor on the metrics Service and a PrometheusRule holding the rules file as it is', async () => {
    const monitor = only(objects, 'ServiceMonitor').spec as {
      selector: { matchLabels: Record<string, string> };
      endpoints: { port: string }[];
    };
    const service = only(objects, 'Service');
    expect(service.metadata.labels).toMatchObject(monitor.selector.matchLabels);
    expect(monitor.endpoints.map((endpoint) => endpoint.port)).toEqual(['metrics']);
    // One definition of the rules: the PrometheusRule is files/alert-rules.yml, unchanged.
    const rulesFile = parse(await readFile(join(CHART_DIR, 'files', 'alert-rules.yml'), 'utf8')) as { groups: unknown[] };
    const rule = only(objects, 'PrometheusRule').spec as { groups: unknown[] };
    expect(rule.groups.length).toBeGreaterThan(0);
    expect(rule.groups).toEqual(rulesFile.groups);
  });
});

describe('values the chart refuses', () => {
  const refusals: [string, string[], RegExp][] = [
    ['a single replica', ['--set', 'replicaCount=1'], /at '\/replicaCount': minimum/],
    ['a misspelt key', ['--set', 'temporal.adress=temporal:7233'], /at '\/temporal': additional properties 'adress' not allowed/],
    ['an unknown log level', ['--set', 'worker.logLevel=LOUD'], /at '\/worker\/logLevel'/],
    ['a Redis URL of another scheme', ['--set', 'redis.url=http://redis:6379'], /at '\/redis\/url'/],
    [
      'a secret value in place of a reference',
      ['--set', 'worker.loginProofKeyRef=pasted-proof-key'],
      /worker\.loginProofKeyRef: must be env:NAME or file:\/path/,
    ],
    [
      'a Secret mounted over the code',
      ['--set', 'secretMounts[0].secretName=s', '--set', 'secretMounts[0].mountPath=/app/secrets'],
      /secretMounts\[0\]\.mountPath: \/app\/secrets overlaps \/app/,
    ],
    [
      'a Secret mounted over the service-account token',
      ['--set', 'secretMounts[0].secretName=s', '--set', 'secretMounts[0].mountPath=/run/secrets'],
      /secretMounts\[0\]\.mountPath: \/run\/secrets overlaps/,
    ],
    [
      'a service-account identity the RBAC does not allow',
      [
        '--set',
        'clientsFile.clients[0].clientId=billing-api',
        '--set',
        'clientsFile.clients[0].assertionRef=serviceaccount:billing/billing-api',
      ],
      /clientsFile\.clients\[0\] \(billing-api\).*serviceAccountTokens/,
    ],
  ];
  test.each(refusals)('%s, naming the field', async (_what, args, message) => {
    const result = await helm.run(['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE, ...args]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });

  test('a refused reference is not repeated: it may be the secret itself', async () => {
    const result = await helm.run([
      'template',
      RELEASE,
      CHART_DIR,
      '--namespace',
      NAMESPACE,
      '--set',
      'redis.tls.keyRef=pasted-private-key',
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/redis\.tls\.keyRef/);
    expect(result.stdout + result.stderr).not.toContain('pasted-private-key');
  });
});

describe('helm install into a real kube-apiserver', () => {
  let kube: KubeApiServer;
  let kubeconfig: string[];

  beforeAll(async () => {
    kube = await startKubeApiServer();
    kubeconfig = ['--kubeconfig', kube.adminKubeconfigPath];
    // The Prometheus Operator's own CRDs, so that its objects meet their real schemas.
    for (const file of ['monitoring.coreos.com_servicemonitors.yaml', 'monitoring.coreos.com_prometheusrules.yaml']) {
      const [crd] = parseManifests(await readFile(join(CRD_DIR, file), 'utf8'));
      const created = await kube.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      await untilEstablished(crd!.metadata.name);
    }
    // The accounts of the production example's serviceAccountTokens, and one it does not list.
    await kube.createNamespace('billing');
    await kube.createServiceAccount('billing', 'billing-api');
    await kube.createServiceAccount('billing', 'payroll-api');
  }, 600_000);

  afterAll(async () => {
    await kube?.stop();
  });

  async function untilEstablished(crd: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { body } = await kube.request<{ status?: { conditions?: { type: string; status: string }[] } }>(
        'GET',
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd}`,
      );
      if (body.status?.conditions?.some((condition) => condition.type === 'Established' && condition.status === 'True')) return;
      if (Date.now() > deadline) throw new Error(`CRD ${crd} was not established within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async function get<T>(path: string): Promise<T> {
    const response = await kube.request<T>('GET', path);
    expect(response.status, `GET ${path}: ${JSON.stringify(response.body)}`).toBe(200);
    return response.body;
  }

  async function install(release: string, namespace: string, args: readonly string[]): Promise<void> {
    const result = await helm.run(['install', release, CHART_DIR, '--namespace', namespace, '--create-namespace', ...kubeconfig, ...args]);
    expect(result.code, `helm install ${release}:\n${result.stderr}`).toBe(0);
  }

  /** A token of the worker's own ServiceAccount: what the pod would have mounted. */
  function workerToken(namespace: string, serviceAccount: string): Promise<string> {
    return kube.requestToken(namespace, serviceAccount);
  }

  test('with the default values: the objects as the API server defaulted them, and no TokenRequest allowed', async () => {
    await install('tlw-default', 'tlw-default', []);
    const deployment = await get<{
      spec: { replicas: number; progressDeadlineSeconds: number; template: PodTemplate & { spec: { restartPolicy: string } } };
    }>('/apis/apps/v1/namespaces/tlw-default/deployments/tlw-default-token-lifecycle-worker');
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    // Fields the chart leaves out, filled in by the API server's defaulting.
    expect(deployment.spec.progressDeadlineSeconds).toBe(600);
    expect(deployment.spec.template.spec.restartPolicy).toBe('Always');
    expect(deployment.spec.template.spec.containers[0]).toMatchObject({ terminationMessagePolicy: 'File' });
    expectLockedDown(deployment.spec.template);
    expect(mountsServiceAccountToken(deployment.spec.template)).toBe(false);

    const budget = await get<{ spec: { minAvailable: number } }>(
      '/apis/policy/v1/namespaces/tlw-default/poddisruptionbudgets/tlw-default-token-lifecycle-worker',
    );
    expect(budget.spec.minAvailable).toBe(1);
    const service = await get<{ spec: { clusterIP: string } }>(
      '/api/v1/namespaces/tlw-default/services/tlw-default-token-lifecycle-worker-metrics',
    );
    expect(service.spec.clusterIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);

    const token = await workerToken('tlw-default', 'tlw-default-token-lifecycle-worker');
    await expect(kube.requestToken('billing', 'billing-api', { token })).rejects.toThrow(/403/);
  });

  test('with the production example: every object admitted, TokenRequest allowed for the named account only', async () => {
    // --no-hooks: the apply Job would wait for a kubelet; it is created below and checked alone.
    await install('token-lifecycle', 'token-lifecycle', ['--values', PRODUCTION, '--no-hooks']);
    const deployment = await get<{ spec: { replicas: number; template: PodTemplate } }>(
      '/apis/apps/v1/namespaces/token-lifecycle/deployments/token-lifecycle',
    );
    expect(deployment.spec.replicas).toBe(3);
    expectLockedDown(deployment.spec.template);
    expect(deployment.spec.template.spec.automountServiceAccountToken).toBe(true);
    await get('/apis/monitoring.coreos.com/v1/namespaces/token-lifecycle/servicemonitors/token-lifecycle');
    const rule = await get<{ spec: { groups: unknown[] } }>(
      '/apis/monitoring.coreos.com/v1/namespaces/token-lifecycle/prometheusrules/token-lifecycle',
    );
    expect(rule.spec.groups.length).toBeGreaterThan(0);

    // The hook Job, as helm would create it after the install.
    const rendered = await helm.run([
      'template',
      'token-lifecycle',
      CHART_DIR,
      '--namespace',
      'token-lifecycle',
      '--values',
      PRODUCTION,
      '--show-only',
      'templates/apply-job.yaml',
    ]);
    expect(rendered.code, rendered.stderr).toBe(0);
    const [job] = parseManifests(rendered.stdout);
    const created = await kube.request<{ spec: { completions: number; template: PodTemplate } }>(
      'POST',
      '/apis/batch/v1/namespaces/token-lifecycle/jobs',
      job,
      { searchParams: { fieldValidation: 'Strict' } },
    );
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.spec.completions).toBe(1);
    expectLockedDown(created.body.spec.template);

    // RBAC, asked with the worker's own token.
    const token = await workerToken('token-lifecycle', 'token-lifecycle');
    const minted = await kube.requestToken('billing', 'billing-api', { token, audiences: ['https://auth.example.com/realms/prod'] });
    const claims = JSON.parse(Buffer.from(minted.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string };
    expect(claims.sub).toBe('system:serviceaccount:billing:billing-api');
    await expect(kube.requestToken('billing', 'payroll-api', { token })).rejects.toThrow(/403/);
    const secrets = await kube.request('GET', '/api/v1/namespaces/billing/secrets', undefined, { token });
    expect(secrets.status).toBe(403);
  });

  test('helm upgrade with a changed clients file replaces the ConfigMap the hook Job applies', async () => {
    const before = await get<{ data: Record<string, string> }>('/api/v1/namespaces/token-lifecycle/configmaps/token-lifecycle-clients');
    expect(before.data['clients.yaml']).not.toContain('reports-api');
    const changed = join(await mkdtemp(join(tmpdir(), 'helm-values-')), 'more-clients.yaml');
    const production = parse(await readFile(PRODUCTION, 'utf8')) as { clientsFile: { clients: unknown[] } };
    const clients = [...production.clientsFile.clients, { clientId: 'reports-api', secretRef: 'file:/run/secrets/orders-api/secret' }];
    await writeFile(changed, stringify({ clientsFile: { clients } }));
    const result = await helm.run([
      'upgrade',
      'token-lifecycle',
      CHART_DIR,
      '--namespace',
      'token-lifecycle',
      ...kubeconfig,
      '--values',
      PRODUCTION,
      '--values',
      changed,
      '--no-hooks',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const after = await get<{ data: Record<string, string> }>('/api/v1/namespaces/token-lifecycle/configmaps/token-lifecycle-clients');
    const applied = parse(after.data['clients.yaml']!) as { clients: { clientId: string }[] };
    expect(applied.clients.map((client) => client.clientId)).toEqual(['orders-api', 'shipping-api', 'billing-api', 'reports-api']);
    await rm(dirname(changed), { recursive: true, force: true });
  });
});
