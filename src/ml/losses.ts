// The SED training loss (reference §2.2-2.3): smoothed cross-entropy over the active heads plus the
// budget-weighted A2D repulsion. Pure tensor math: no tidy, no host reads, no parameters.
import * as tf from "@tensorflow/tfjs-core";
import type { EffectiveLoss } from "./train-config.ts";
import { expFast, logSoftmaxFast } from "./kernels/native-exp.ts";

export interface SedLossParts {
  total: tf.Scalar;
  task: tf.Scalar;
  /** R = mean_n alpha_n * A2D_n; 0 when the term is never computed. */
  repulsion: tf.Scalar;
}

/** Identity forward, zero gradient (torch `.detach()` / `no_grad`). */
export const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

/** t = (1 - eps) * onehot(y) + eps / C (DU:train/train.py smooth_labels), or the plain one-hot. */
export function smoothedTargets(labels: tf.Tensor1D, classes: number, eps: number | null): tf.Tensor2D {
  const onehot = tf.cast(tf.oneHot(labels, classes), "float32") as tf.Tensor2D;
  if (eps === null) return onehot;
  return tf.add(tf.mul(onehot, 1 - eps), eps / classes) as tf.Tensor2D;
}

/** Per-sample CE with probability targets: -sum_c t_c log softmax(z)_c. */
export function softCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D {
  return tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(logits)), -1)) as tf.Tensor1D;
}

/**
 * alpha_n = CE_n / (mean_b CE_b)^2 for the mean-LOGIT prediction of the given heads, without gradient
 * (the budget modifier).
 */
export function budgetWeights(logits: tf.Tensor2D[], labels: tf.Tensor1D, classes: number): tf.Tensor1D {
  const ens = stopGradient(tf.div(tf.addN(logits), logits.length)) as tf.Tensor2D;
  const ce = softCrossEntropy(ens, smoothedTargets(labels, classes, null));
  return tf.div(ce, tf.square(tf.mean(ce))) as tf.Tensor1D;
}

/**
 * A2D_n: mean over heads i != ref of -log(a(1-b) + b(1-a) + 1e-9), a = p_i(argmax p_i), b = p_ref(same
 * class). Gradients flow through a and b; argmax is not differentiated.
 */
export function a2dPerSample(logits: tf.Tensor2D[], ref: number, classes: number): tf.Tensor1D {
  const pr = tf.softmax(logits[ref]);
  const terms: tf.Tensor1D[] = [];
  logits.forEach((z, i) => {
    if (i === ref) return;
    const pi = tf.softmax(z);
    const mask = tf.cast(tf.oneHot(tf.argMax(z, -1) as tf.Tensor1D, classes), "float32");
    const a = tf.sum(tf.mul(pi, mask), -1);
    const b = tf.sum(tf.mul(pr, mask), -1);
    const agreeNot = tf.add(tf.add(tf.mul(a, tf.sub(1, b)), tf.mul(b, tf.sub(1, a))), 1e-9);
    terms.push(tf.neg(tf.log(agreeNot)) as tf.Tensor1D);
  });
  return (terms.length === 1 ? terms[0] : tf.div(tf.addN(terms), terms.length)) as tf.Tensor1D;
}

/**
 * L = (1 - lambda) * mean_heads CE(t) + mu * lambda * mean_n(alpha_n * A2D_n) (reference §2.3).
 * `logits` are the active heads in ascending index order; `ref` is the position of the reference head
 * among them (ignored when the repulsion term is not computed).
 */
export function sedLoss(logits: tf.Tensor2D[], labels: tf.Tensor1D, classes: number, cfg: EffectiveLoss, ref: number): SedLossParts {
  const targets = smoothedTargets(labels, classes, cfg.smoothingEps);
  const perHead = logits.map((z) => tf.mean(softCrossEntropy(z, targets)));
  const task = tf.div(tf.addN(perHead), logits.length) as tf.Scalar;
  if (!cfg.computeRepulsion) {
    return { task, repulsion: tf.scalar(0), total: tf.mul(task, 1 - cfg.lambda) as tf.Scalar };
  }
  const alpha = budgetWeights(logits, labels, classes);
  const repulsion = tf.mean(tf.mul(alpha, a2dPerSample(logits, ref, classes))) as tf.Scalar;
  // mu * lambda == 0 still computes (and logs) R, as the reference does for OOD_gen.
  const total = tf.add(tf.mul(task, 1 - cfg.lambda), tf.mul(repulsion, cfg.mu * cfg.lambda)) as tf.Scalar;
  return { task, repulsion, total };
}

export interface SedLossWithGrad extends SedLossParts {
  /** dL/dz_k for each active head, same order as the logits. */
  dlogits: tf.Tensor2D[];
}

/**
 * sedLoss plus its gradient with respect to each head's logits, written out by hand (tfjs-core's npm
 * build registers no gradients):
 *   task:  dL/dz_k += (1 - lambda) (p_k - t) / (K N)
 *   A2D:   with u = a + b - 2ab, c_n = mu lambda alpha_n / (N (K - 1)) * (-1 / (u + 1e-9)):
 *          dz_i += c_n (1 - 2b) a (onehot(c^) - p_i);  dz_ref += c_n (1 - 2a) b (onehot(c^) - p_ref)
 *   (softmax Jacobian dp_c/dz_j = p_c (delta_cj - p_j); alpha_n is constant; argmax is not differentiated).
 */
export function sedLossWithGrad(logits: tf.Tensor2D[], labels: tf.Tensor1D, classes: number, cfg: EffectiveLoss, ref: number): SedLossWithGrad {
  const K = logits.length;
  const N = logits[0].shape[0];
  const targets = smoothedTargets(labels, classes, cfg.smoothingEps);
  const logp = logits.map((z) => logSoftmaxFast(z));
  const p = logp.map((l) => expFast(l) as tf.Tensor2D);
  const perHead = logp.map((l) => tf.mean(tf.neg(tf.sum(tf.mul(targets, l), -1))));
  const task = tf.div(tf.addN(perHead), K) as tf.Scalar;
  const taskScale = (1 - cfg.lambda) / (K * N);
  const dlogits = p.map((pk) => tf.mul(tf.sub(pk, targets), taskScale) as tf.Tensor2D);
  if (!cfg.computeRepulsion) {
    return { task, repulsion: tf.scalar(0), total: tf.mul(task, 1 - cfg.lambda) as tf.Scalar, dlogits };
  }
  // budgetWeights' math without its stopGradient (nothing is taped here) and with the native exp.
  const ens = tf.div(tf.addN(logits), K) as tf.Tensor2D;
  const ce = tf.neg(tf.sum(tf.mul(smoothedTargets(labels, classes, null), logSoftmaxFast(ens)), -1));
  const alpha = tf.div(ce, tf.square(tf.mean(ce))) as tf.Tensor1D;
  const pr = p[ref];
  const terms: tf.Tensor1D[] = [];
  const w = cfg.mu * cfg.lambda;
  for (let i = 0; i < K; i++) {
    if (i === ref) continue;
    const mask = tf.cast(tf.oneHot(tf.argMax(logits[i], -1) as tf.Tensor1D, classes), "float32") as tf.Tensor2D;
    const a = tf.sum(tf.mul(p[i], mask), -1, true);
    const b = tf.sum(tf.mul(pr, mask), -1, true);
    const u = tf.add(tf.add(tf.mul(a, tf.sub(1, b)), tf.mul(b, tf.sub(1, a))), 1e-9);
    terms.push(tf.reshape(tf.neg(tf.log(u)), [N]) as tf.Tensor1D);
    if (w !== 0) {
      const cn = tf.div(tf.mul(tf.reshape(alpha, [N, 1]), -w / (N * (K - 1))), u);
      const di = tf.mul(tf.mul(cn, tf.mul(tf.sub(1, tf.mul(b, 2)), a)), tf.sub(mask, p[i]));
      const dr = tf.mul(tf.mul(cn, tf.mul(tf.sub(1, tf.mul(a, 2)), b)), tf.sub(mask, pr));
      dlogits[i] = tf.add(dlogits[i], di) as tf.Tensor2D;
      dlogits[ref] = tf.add(dlogits[ref], dr) as tf.Tensor2D;
    }
  }
  const a2d = terms.length === 1 ? terms[0] : (tf.div(tf.addN(terms), terms.length) as tf.Tensor1D);
  const repulsion = tf.mean(tf.mul(alpha, a2d)) as tf.Scalar;
  const total = tf.add(tf.mul(task, 1 - cfg.lambda), tf.mul(repulsion, w)) as tf.Scalar;
  return { task, repulsion, total, dlogits };
}
