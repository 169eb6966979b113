// Entry point: routes between the quiz board (`#/`) and one quiz (`#/quiz/<id>` or `?quiz=<id>`).

import { showBoard } from './board.js';
import { takeKeyFromLocation } from './key.js';
import { showQuiz } from './quiz.js';

let leave = () => {};

function quizIdFromLocation() {
  // An explicit hash route wins over the query string.
  if (location.hash.startsWith('#/')) {
    const match = location.hash.match(/^#\/quiz\/([^/?#]+)/);
    return match ? decodeURIComponent(match[1]) : null;
  }
  return new URLSearchParams(location.search).get('quiz');
}

function setConnection(state) {
  document.getElementById('connection').textContent = state;
}

function route() {
  leave();
  const quizId = quizIdFromLocation();
  const board = document.getElementById('board-view');
  const quiz = document.getElementById('quiz-view');
  board.hidden = Boolean(quizId);
  quiz.hidden = !quizId;
  const heading = document.getElementById(quizId ? 'quiz-title' : 'board-title');
  leave = quizId ? showQuiz(quizId, setConnection) : showBoard(setConnection);
  // Move focus to the new view's heading, so keyboard and screen-reader users land there.
  if (document.activeElement && document.activeElement !== document.body) heading.focus();
}

takeKeyFromLocation();
window.addEventListener('hashchange', route);
document.getElementById('open-quiz').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = document.getElementById('open-quiz-id').value.trim();
  if (id) location.hash = `#/quiz/${encodeURIComponent(id)}`;
});
route();
