/**
 * Plain-object views of @kubernetes/client-node's model classes.
 *
 * The client's models are classes, but admission reviews carry plain JSON and DSO builds plain
 * objects; typing them as class instances would claim prototypes they do not have. These aliases
 * keep the client's field names and types while describing plain data. A `V1Pod` instance is
 * assignable to `Pod`.
 */
import type {
  V1Container,
  V1EnvVar,
  V1Pod,
  V1PodSecurityContext,
  V1ResourceRequirements,
  V1SecurityContext,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";

/** The data shape of a model class, recursively, without its class identity. */
export type Plain<T> = T extends Date
  ? T
  : T extends readonly (infer U)[]
    ? Plain<U>[]
    : T extends object
      ? { [K in keyof T]: Plain<T[K]> }
      : T;

export type Pod = Plain<V1Pod>;
export type Container = Plain<V1Container>;
export type Volume = Plain<V1Volume>;
export type VolumeMount = Plain<V1VolumeMount>;
export type EnvVar = Plain<V1EnvVar>;
export type ResourceRequirements = Plain<V1ResourceRequirements>;
export type SecurityContext = Plain<V1SecurityContext>;
export type PodSecurityContext = Plain<V1PodSecurityContext>;
