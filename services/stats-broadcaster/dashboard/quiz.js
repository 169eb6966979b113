// One quiz, live: answers as they arrive, counters, the option histogram and the audit.

import { keepConnected } from './socket.js';
import { countTo, motionReduced } from './motion.js';

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const letter = (position) => LETTERS[position] ?? String(position + 1);
const percent = (value) => `${Math.round(value)}%`;

const $ = (id) => document.getElementById(id);

/** Sets a bar's width; with motion allowed the CSS transition makes it grow. */
function setWidth(fill, share) {
  const width = `${Math.max(0, Math.min(100, share * 100)).toFixed(1)}%`;
  if (motionReduced()) {
    fill.style.width = width;
    return;
  }
  // Let a freshly inserted bar render at 0 first, so it grows instead of appearing.
  requestAnimationFrame(() => requestAnimationFrame(() => { fill.style.width = width; }));
}

function answerItem(event, quiz, disputedThreshold) {
  const item = document.createElement('li');
  item.className = 'answer';
  item.dataset.index = String(event.index);
  const question = quiz?.questions?.[event.index];
  const title = document.createElement('p');
  title.className = 'answer-question';
  const number = document.createElement('strong');
  number.textContent = `Question ${event.index + 1}`;
  title.append(number, question ? ` ${question.text}` : '');
  item.append(title);

  if (!event.answer) {
    item.classList.add('failed');
    const failed = document.createElement('p');
    failed.className = 'verdict verdict-failed';
    failed.textContent = `✕ Failed: ${event.error ?? 'no answer'}`;
    item.append(failed);
    return item;
  }
  const chosen = document.createElement('p');
  chosen.className = 'answer-choice';
  const labels = event.answer.selected.map((position) => {
    const text = question?.options?.[position];
    return text ? `${letter(position)}. ${text}` : letter(position);
  });
  chosen.textContent = `Answer: ${labels.join(', ') || 'none'}`;
  item.append(chosen);

  const confidence = document.createElement('p');
  confidence.className = 'answer-confidence';
  if (event.answer.confidence != null) {
    const value = document.createElement('span');
    value.className = 'num confidence-value';
    value.textContent = '0%';
    confidence.append('Confidence ', value);
    const meter = document.createElement('span');
    meter.className = 'meter';
    meter.setAttribute('aria-hidden', 'true');
    const fill = document.createElement('span');
    fill.className = 'meter-fill';
    meter.append(fill);
    confidence.append(' ', meter);
    countTo(value, event.answer.confidence * 100, percent);
    setWidth(fill, event.answer.confidence);
  } else {
    confidence.textContent = 'Confidence unknown';
  }
  if (event.answer.cached) {
    const cached = document.createElement('span');
    cached.className = 'tag';
    cached.textContent = 'cached';
    confidence.append(' ', cached);
  }
  item.append(confidence);

  if (event.agrees_with_key === false) {
    item.classList.add('disagrees');
    const verdict = document.createElement('p');
    verdict.className = 'verdict verdict-disagrees';
    const disputed = (event.answer.confidence ?? 0) >= disputedThreshold;
    verdict.textContent = disputed
      ? '⚠ Disagrees with the key (disputed: the model is confident)'
      : '⚠ Disagrees with the key';
    item.append(verdict);
  } else if (event.agrees_with_key === true) {
    const verdict = document.createElement('p');
    verdict.className = 'verdict verdict-agrees';
    verdict.textContent = '✓ Agrees with the key';
    item.append(verdict);
  }
  return item;
}

function showHistogram(histogram) {
  const list = $('histogram');
  const total = histogram.reduce((sum, count) => sum + count, 0);
  histogram.forEach((count, position) => {
    let item = list.children[position];
    if (!item) {
      item = document.createElement('li');
      item.className = 'bar';
      const label = document.createElement('span');
      label.className = 'bar-label';
      label.textContent = `Option ${letter(position)}`;
      const track = document.createElement('span');
      track.className = 'bar-track';
      track.setAttribute('aria-hidden', 'true');
      const fill = document.createElement('span');
      fill.className = 'bar-fill';
      track.append(fill);
      const value = document.createElement('span');
      value.className = 'bar-count num';
      value.textContent = '0';
      item.append(label, track, value);
      list.append(item);
    }
    countTo(item.querySelector('.bar-count'), count);
    setWidth(item.querySelector('.bar-fill'), total ? count / total : 0);
  });
}

function showStats(stats) {
  const finished = stats.answered + stats.failed;
  countTo($('answered'), stats.answered);
  $('total').textContent = String(stats.total);
  countTo($('failed'), stats.failed);
  if (stats.mean_confidence != null) countTo($('mean-confidence'), stats.mean_confidence * 100, percent);
  if (stats.agreement_rate != null) countTo($('agreement'), stats.agreement_rate * 100, percent);
  else $('agreement').textContent = 'no key';
  countTo($('disagreements'), stats.disagreements.length);
  countTo($('disputed'), stats.disputed.length);
  if (stats.answered) countTo($('cache-share'), stats.cache_hit_share * 100, percent);
  countTo($('tokens'), stats.prompt_tokens + stats.completion_tokens);
  countTo($('cost'), stats.cost_usd, (value) => `$${value.toFixed(4)}`);
  const { p50, p95 } = stats.latency_ms;
  $('latency').textContent = p50 == null ? 'no LLM calls' : `${p50} / ${p95}`;
  const progress = $('progress');
  progress.setAttribute('aria-valuemax', String(stats.total));
  progress.setAttribute('aria-valuenow', String(finished));
  setWidth($('progress-fill'), stats.total ? finished / stats.total : 0);
  showHistogram(stats.option_histogram);
  if (stats.state !== 'running') setStatus(stats.state);
}

function setStatus(status) {
  const element = $('quiz-status');
  element.textContent = status;
  element.className = `status status-${status}`;
}

export function showQuiz(quizId, setConnection) {
  $('quiz-id').textContent = quizId;
  $('answers').replaceChildren();
  $('histogram').replaceChildren();
  $('answers-empty').hidden = false;
  for (const id of ['answered', 'failed', 'disagreements', 'disputed', 'tokens']) {
    $(id).dataset.value = '0';
    $(id).textContent = '0';
  }
  setStatus('connecting');
  let quiz = null;
  let threshold = 0.8;
  return keepConnected({
    first: (lastSeq) => ({ type: 'subscribe', quiz_id: quizId, after: lastSeq, stats: true }),
    onState: (state, reason) => {
      setConnection(state);
      if (state === 'closed') setStatus(reason || 'unavailable');
    },
    onMessage: (message) => {
      switch (message.type) {
        case 'quiz':
          quiz = message;
          $('total').textContent = String(message.total);
          if (!['completed', 'failed'].includes($('quiz-status').textContent)) setStatus(message.status);
          break;
        case 'question_answered': {
          const answers = $('answers');
          if (answers.querySelector(`li[data-index="${message.index}"]`)) break;
          answers.append(answerItem(message, quiz, threshold));
          $('answers-empty').hidden = true;
          if ($('quiz-status').textContent !== 'completed') setStatus('analyzing');
          break;
        }
        case 'stats':
          threshold = message.stats.dispute_confidence;
          showStats(message.stats);
          break;
        case 'quiz_completed':
          setStatus('completed');
          break;
        case 'quiz_failed':
          setStatus('failed');
          break;
        default:
          break;
      }
    },
  });
}
