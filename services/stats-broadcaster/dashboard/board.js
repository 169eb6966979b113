// The quiz board: live and recent quizzes of this replica, over `subscribe_all`.

import { keepConnected } from './socket.js';
import { countTo } from './motion.js';

const STATUS_TEXT = {
  queued: 'Queued',
  analyzing: 'Analyzing',
  completed: 'Completed',
  failed: 'Failed',
};

function quizItem(quiz) {
  const item = document.createElement('li');
  item.className = 'quiz-item';
  item.dataset.id = quiz.id;
  const link = document.createElement('a');
  link.href = `#/quiz/${encodeURIComponent(quiz.id)}`;
  link.className = 'quiz-link';
  link.textContent = `Quiz ${quiz.id}`;
  const status = document.createElement('span');
  status.className = `status status-${quiz.status}`;
  status.textContent = STATUS_TEXT[quiz.status] ?? quiz.status;
  const details = document.createElement('span');
  details.className = 'muted';
  const total = quiz.n_questions ?? '?';
  const done = quiz.answered + quiz.failed;
  const parts = [`${done} / ${total} questions`];
  if (quiz.failed) parts.push(`${quiz.failed} failed`);
  if (quiz.source) parts.push(`from ${quiz.source}`);
  if (quiz.has_answer_key) parts.push('with key');
  details.textContent = parts.join(' · ');
  item.append(link, ' ', status, ' ', details);
  return item;
}

export function showBoard(setConnection) {
  const list = document.getElementById('quiz-list');
  const empty = document.getElementById('board-empty');
  const render = (quiz, { prepend }) => {
    const existing = list.querySelector(`li[data-id="${CSS.escape(quiz.id)}"]`);
    const item = quizItem(quiz);
    if (existing) existing.replaceWith(item);
    else if (prepend) list.prepend(item);
    else list.append(item);
    empty.hidden = list.children.length > 0;
  };
  const showGlobal = (global) => {
    countTo(document.getElementById('in-flight'), global.in_flight);
    countTo(document.getElementById('questions-per-sec'), global.questions_per_sec, (v) => v.toFixed(1));
  };
  return keepConnected({
    first: () => ({ type: 'subscribe_all' }),
    onState: setConnection,
    onMessage: (message) => {
      switch (message.type) {
        case 'quizzes':
          list.replaceChildren();
          message.quizzes.forEach((quiz) => render(quiz, { prepend: false }));
          empty.hidden = list.children.length > 0;
          showGlobal(message.global);
          break;
        case 'quiz_added':
          render(message.quiz, { prepend: true });
          break;
        case 'quiz_updated':
          render(message.quiz, { prepend: true });
          break;
        case 'global':
          showGlobal(message.global);
          break;
        default:
          break;
      }
    },
  });
}
